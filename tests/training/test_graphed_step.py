"""The training step replayed from a CUDA graph computes what the eager step computes."""

from __future__ import annotations

import pyro
import pytest
import torch

from ppl_vae.data import load_dataset
from ppl_vae.models import VAE
from ppl_vae.training import SVIConfig, graphed_step, train
from ppl_vae.training.loop import adam

#: Graphed and eager runs draw the same random numbers and run the same kernels; what may
#: differ is the order of float32 reductions (cuBLAS may pick another algorithm in a graph).
#: After ~50 Adam steps of size 3e-3 that leaves differences far below 1e-4, while a run on
#: other random numbers differs by ~1e-2.
PARAMETER_ATOL = 1e-4

#: The per-epoch train ELBO (nats per image, ~30) of the two runs agrees to this relative error.
ELBO_RTOL = 1e-5


def _config(**kwargs) -> SVIConfig:
    settings = {"epochs": 2, "batch_size": 64, "learning_rate": 3e-3, "binarize": "dynamic"}
    return SVIConfig(**(settings | kwargs))


def _run(device: torch.device, config: SVIConfig, cuda_graph: bool, monkeypatch) -> tuple[VAE, list, int]:
    """Train a fresh VAE (the same initial weights every call); return it, its history, the captures."""
    captures = []
    record = graphed_step.GraphedStep._capture

    def counting_capture(self):
        captures.append(1)
        record(self)

    monkeypatch.setattr(graphed_step.GraphedStep, "_capture", counting_capture)
    data = load_dataset("digits", seed=0).to(device)
    pyro.set_rng_seed(0)
    model = VAE(64, 2, hidden_dims=(32,)).to(device)
    history = train(model, data.train_x, config, test_x=data.test_x, cuda_graph=cuda_graph).history
    return model, history, len(captures)


def test_the_step_is_recorded_only_on_cuda():
    model = VAE(64, 2, hidden_dims=(32,))
    optimizer = adam(model.parameters(), 1e-3)
    reason = graphed_step.graph_blocker(list(model.parameters()), optimizer, torch.zeros(4, 64),
                                        direct_loss=True, constant_beta=True, processes=1)
    assert reason == "not on one CUDA device"


@pytest.mark.gpu
@pytest.mark.parametrize("settings", [{}, {"clip_norm": 5.0}, {"objective": "iwae", "num_particles": 3}],
                         ids=["elbo", "clipped", "iwae"])
def test_graphed_training_equals_eager_training_on_cuda(settings, monkeypatch):
    device = torch.device("cuda")
    config = _config(**settings)
    eager, eager_history, eager_captures = _run(device, config, False, monkeypatch)
    graphed, graphed_history, captures = _run(device, config, True, monkeypatch)
    assert (eager_captures, captures) == (0, 1)
    for (name, a), b in zip(eager.named_parameters(), graphed.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=PARAMETER_ATOL), (name, (a - b).abs().max().item())
    for a, b in zip(eager_history, graphed_history):
        assert a["train_elbo"] == pytest.approx(b["train_elbo"], rel=ELBO_RTOL)
        assert a["test_elbo"] == pytest.approx(b["test_elbo"], rel=ELBO_RTOL)


@pytest.mark.gpu
def test_a_changing_kl_weight_trains_eagerly_on_cuda(monkeypatch):
    _, history, captures = _run(torch.device("cuda"), _config(kl_warmup_epochs=2), True, monkeypatch)
    assert captures == 0
    assert history[-1]["beta"] == 1.0
