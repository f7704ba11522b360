"""Arguments of the tiny CLI training run shared by the command-line tests."""

#: Two epochs of a latent-2 VAE with 16 hidden units on the 8x8 digits: seconds.
TINY = ["--data", "digits", "--latent-dim", "2", "--hidden-dims", "16", "--epochs", "2",
        "--batch-size", "256", "--quiet"]
