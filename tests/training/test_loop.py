"""The SVI training loop: it trains, it resumes exactly, it stops cleanly on divergence."""

from __future__ import annotations

import json
import math

import pyro
import pytest
import torch

from ppl_vae.checkpoint import save_checkpoint
from ppl_vae.data import load_dataset
from ppl_vae.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainingDivergedError,
)
from ppl_vae.models import VAE, LinearGaussian
from ppl_vae.training import SVIConfig, kl_weight, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def small_vae(data_dim: int = 64) -> VAE:
    return VAE(data_dim, 2, hidden_dims=(32,))


def fast_config(**kwargs) -> SVIConfig:
    settings = {"epochs": 4, "batch_size": 64, "learning_rate": 3e-3, "binarize": "dynamic",
                "checkpoint_every": 1}
    return SVIConfig(**(settings | kwargs))


def test_training_on_digits_improves_train_and_test_elbo(digits, tmp_path):
    result = train(small_vae(), digits.train_x, fast_config(epochs=6), test_x=digits.test_x,
                   out_dir=tmp_path)
    first, last = result.history[0], result.history[-1]
    assert last["train_elbo"] > first["train_elbo"] + 2
    assert last["test_elbo"] > first["test_elbo"] + 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(r["wall_time"] > 0 for r in result.history)


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(digits, tmp_path):
    config = fast_config(epochs=4)
    pyro.set_rng_seed(7)
    straight = small_vae()
    straight_result = train(straight, digits.train_x, config, test_x=digits.test_x,
                            out_dir=tmp_path / "straight")

    pyro.clear_param_store()
    pyro.set_rng_seed(7)
    first_leg = small_vae()
    train(first_leg, digits.train_x, fast_config(epochs=2), test_x=digits.test_x,
          out_dir=tmp_path / "split")
    pyro.clear_param_store()
    torch.manual_seed(123)  # a different initialization, overwritten by the checkpoint
    resumed = small_vae()
    resumed_result = train(resumed, digits.train_x, config, test_x=digits.test_x,
                           out_dir=tmp_path / "split", resume=True)

    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name

    def strip(history):
        return [{k: v for k, v in record.items() if k != "wall_time"} for record in history]

    assert strip(resumed_result.history) == strip(straight_result.history)


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    class PoisonedVAE(VAE):
        """Its loss turns NaN after a fixed number of steps."""

        calls = 0

        def model(self, x, num_data=None, beta=1.0):
            super().model(x, num_data, beta)
            if num_data is None:  # a look at the program or the test ELBO, not a training step
                return
            type(self).calls += 1
            if self.calls > 2 * steps_per_epoch:  # NaN from the third epoch on
                pyro.factor("poison", x.new_tensor(math.nan))

    steps_per_epoch = math.ceil(len(digits.train_x) / 64)
    model = PoisonedVAE(64, 2, hidden_dims=(32,))
    with pytest.raises(TrainingDivergedError, match="epoch 3.*epoch 2\\) is kept.*learning rate"):
        train(model, digits.train_x, fast_config(epochs=5, batch_size=64), out_dir=tmp_path)
    from ppl_vae.checkpoint import load_checkpoint

    kept = load_checkpoint(tmp_path)
    assert kept["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in kept["model_state"].values())


def test_existing_output_is_not_overwritten_without_asking(digits, tmp_path):
    train(small_vae(), digits.train_x, fast_config(epochs=1), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="--resume.*--overwrite"):
        train(small_vae(), digits.train_x, fast_config(epochs=1), out_dir=tmp_path)
    train(small_vae(), digits.train_x, fast_config(epochs=1), out_dir=tmp_path, overwrite=True)


def test_adam_is_fused_and_a_checkpoint_of_the_unfused_one_resumes_as_written(digits, tmp_path,
                                                                              monkeypatch):
    """Checkpoints written before Adam was fused (fused=None) resume, with the kernel they were
    written with, so the continued run is the one that was interrupted."""
    vae = small_vae()
    train(vae, digits.train_x, fast_config(epochs=1), out_dir=tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["optimizer_state"]["param_groups"][0]["fused"] is True
    checkpoint["optimizer_state"]["param_groups"][0]["fused"] = None
    save_checkpoint(tmp_path / "checkpoint.pt", checkpoint)
    resumed = small_vae()
    captured = {}
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        captured["fused"] = self.param_groups[0]["fused"]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    result = train(resumed, digits.train_x, fast_config(epochs=2), out_dir=tmp_path, resume=True)
    assert captured["fused"] is None and [r["epoch"] for r in result.history] == [1, 2]


def test_resume_refuses_another_model_or_setting(digits, tmp_path):
    train(small_vae(), digits.train_x, fast_config(epochs=1), out_dir=tmp_path)
    other = VAE(64, 3, hidden_dims=(32,))
    with pytest.raises(CheckpointError, match="'latent_dim'"):
        train(other, digits.train_x, fast_config(epochs=2), out_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="'learning_rate'"):
        train(small_vae(), digits.train_x, fast_config(epochs=2, learning_rate=0.1),
              out_dir=tmp_path, resume=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(small_vae(), digits.train_x, fast_config(), out_dir=tmp_path / "empty", resume=True)


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", -1), ("num_particles", 0), ("learning_rate", 0.0),
    ("learning_rate", math.inf), ("elbo", "renyi"), ("beta", -1.0), ("binarize", "sometimes"),
    ("clip_norm", 0.0), ("epochs", 2.5),
])
def test_bad_settings_are_refused(field, value):
    with pytest.raises((ConfigError, DataError), match=field if field != "binarize" else "binar"):
        SVIConfig(**{field: value})


def test_bad_data_is_refused_before_anything_is_written(tmp_path):
    vae = small_vae(4)
    cases = [
        (torch.tensor([[0.0, 1.0, math.nan, 0.0]]), "NaN"),
        (torch.tensor([[0.0, 2.0, 0.5, 0.0]]), "\\[0, 1\\].*--binarize.*gaussian"),
        (torch.zeros(3, 5), "expects shape"),
    ]
    for x, message in cases:
        with pytest.raises(DataError, match=message):
            train(vae, x, SVIConfig(epochs=1), out_dir=tmp_path / "out")
        assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_kl_warmup_ramps_linearly_to_beta():
    config = SVIConfig(beta=2.0, kl_warmup_epochs=2)
    weights = [kl_weight(config, epoch, step, 4) for epoch in range(3) for step in range(4)]
    assert weights[0] == pytest.approx(0.25) and weights[3] == pytest.approx(1.0)
    assert weights[7] == pytest.approx(2.0) and weights[-1] == 2.0


def test_svi_reaches_the_closed_form_maximum_likelihood():
    data = load_dataset("linear-gaussian", seed=0, num_points=2000, data_dim=6, latent_dim=2,
                        noise_scale=0.5, dtype=torch.float64)
    best = LinearGaussian.fit_maximum_likelihood(data.train_x, 2)
    best_log_lik = float(best.log_marginal(data.train_x).mean())
    model = LinearGaussian(6, 2).double()
    train(model, data.train_x, SVIConfig(epochs=150, batch_size=600, learning_rate=0.02,
                                         elbo="trace", num_particles=4))
    svi_log_lik = float(model.log_marginal(data.train_x).mean())
    # The optimum of the ELBO is the maximum likelihood here (the guide family holds
    # the exact posterior); what is left is optimizer noise from the minibatches.
    assert svi_log_lik <= best_log_lik + 1e-9
    assert best_log_lik - svi_log_lik < 0.01, (best_log_lik, svi_log_lik)


@pytest.mark.gpu
def test_training_on_cuda_keeps_everything_on_the_device(digits, tmp_path):
    device = torch.device("cuda")
    data = digits.to(device)
    model = small_vae().to(device)
    result = train(model, data.train_x, fast_config(epochs=2), test_x=data.test_x, out_dir=tmp_path)
    assert math.isfinite(result.final_test_elbo)
    assert all(p.device.type == "cuda" for p in model.parameters())
