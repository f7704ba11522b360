"""Blocks of masked NUTS steps compiled into one graph each: ``batched_nuts(..., jit_compile=True)``.

With few chains an eager step costs a few hundred operator dispatches and
an autograd pass for a handful of numbers; on a small model that, not
arithmetic, is the run time. A block is :data:`BLOCK_STEPS` masked steps of
:class:`~ppl_vae.inference.mcmc.batched_nuts._Sampler` (the same tree
code), each followed by its warm-up adaptation (dual averaging, and the
mass-matrix estimate in slow windows) and the record of the draws it
completed, all inside one ``torch.while_loop`` that ``torch.compile``
turns into one graph: the host is visited once per block. The state
crosses the graph's boundary packed into a few tensors, since a compiled
call pays per tensor, and the random numbers of the whole block are drawn
before it (the graph cannot hold a ``torch.Generator``).
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import torch
from torch._higher_order_ops.while_loop import while_loop

from ppl_vae.errors import ConfigError
from ppl_vae.inference.mcmc.adaptation import DualAveraging, RunningCovariance

if TYPE_CHECKING:
    from ppl_vae.inference.mcmc.batched_nuts import _Sampler

#: Steps per compiled call; the host checks between blocks whether any chain is still short of its stage end.
BLOCK_STEPS = 16

_POINTS = ("current", "left", "right", "front", "proposal", "sub_proposal")
#: Per-chain numbers, counters and flags, kept in the run's floating dtype (exact for these sizes).
_COLUMNS = {"step_size": None, "energy0": None, "tree_weight": None, "sub_weight": None, "accept_sum": None,
            "sub_accept_sum": None, "iteration": torch.long, "depth": torch.long, "num_steps": torch.long,
            "sub_size": torch.long, "fresh": torch.bool, "new_subtree": torch.bool,
            "going_right": torch.bool, "sub_turning": torch.bool, "sub_diverging": torch.bool}
_SUMS = ("r_sum", "sub_r_sum")
_CHECKPOINTS = ("r_ckpts", "r_sum_ckpts")
#: The sampler's attributes that change within a block (the rest is fixed for a run, or set between stages).
STATE = (*_POINTS, *_COLUMNS, *_SUMS, *_CHECKPOINTS)
#: What a block records per step and chain beside the position: finished, iteration, then the draw's statistics.
RECORDED = ("finished", "iteration", "num_steps", "tree_depth", "diverging", "acceptance_rate")


def pack(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sampler's state in four tensors: points (chains, 6, 3 dim + 1), columns (chains, 15),
    momentum sums (chains, 2, dim) and checkpoints (chains, 2, depth, dim)."""
    points = torch.stack([state[name] for name in _POINTS], 1)
    dtype = points.dtype
    columns = torch.stack([state[name].to(dtype) for name in _COLUMNS], 1)
    sums = torch.stack([state[name] for name in _SUMS], 1)
    checkpoints = torch.stack([state[name] for name in _CHECKPOINTS], 1)
    return points, columns, sums, checkpoints


def unpack(points: torch.Tensor, columns: torch.Tensor, sums: torch.Tensor,
           checkpoints: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack`."""
    state = {name: points[:, i] for i, name in enumerate(_POINTS)}
    state.update({name: columns[:, i] if dtype is None else columns[:, i].to(dtype)
                  for i, (name, dtype) in enumerate(_COLUMNS.items())})
    state.update({name: sums[:, i] for i, name in enumerate(_SUMS)})
    state.update({name: checkpoints[:, i] for i, name in enumerate(_CHECKPOINTS)})
    return state


class CompiledBlocks:
    """Advance a masked sampler to a stage end in compiled blocks of :data:`BLOCK_STEPS` steps.

    Parameters
    ----------
    sampler : _Sampler
        A masked sampler; its potential must be traceable by ``torch.compile``.
    target_accept_prob : float
        Target of the dual averaging.
    """

    def __init__(self, sampler: _Sampler, target_accept_prob: float) -> None:
        if sampler.z.device.type == "cpu" and not has_cpp_compiler():
            raise ConfigError("jit_compile=True on the CPU needs a C++ compiler for torch.compile (g++ or "
                              "clang++ on the PATH, or $CXX); install one (Debian: apt install g++) or "
                              "pass jit_compile=False")
        self.sampler = sampler
        self.target_accept_prob = target_accept_prob
        # The C++ wrapper: the generated Python one spends ~150 us per step allocating buffers.
        self._block = torch.compile(self._run_block, fullgraph=True, dynamic=False,
                                    options={"cpp_wrapper": True, "cpp.threads": 1})

    def advance(self, stage_end: int, averaging: DualAveraging, covariance: RunningCovariance | None,
                record: tuple[int, torch.Tensor, dict[str, torch.Tensor]] | None = None) -> None:
        """Run every chain to iteration ``stage_end``, adapting the step size while ``averaging``
        is given, folding draws into ``covariance`` if given, and storing them if ``record`` =
        ``(warmup_steps, samples, stats)`` is."""
        sampler = self.sampler
        like = sampler.step_size
        stage = torch.full_like(sampler.iteration, stage_end)
        flags = torch.tensor([record is None, covariance is not None], device=like.device)
        tracked = covariance if covariance is not None else RunningCovariance(sampler.z, sampler.metric.dense)
        while bool((sampler.iteration < stage).any()):
            if sampler.before_gradient is not None:
                sampler.before_gradient()
            noise_z = torch.randn((BLOCK_STEPS, *sampler.z.shape), generator=sampler.generator, dtype=like.dtype,
                                  device=like.device)
            noise_u = torch.rand((BLOCK_STEPS, 3, *like.shape), generator=sampler.generator, dtype=like.dtype,
                                 device=like.device)
            dual = torch.stack([averaging.prox_center, averaging.t, averaging.g_avg, averaging.x_avg], 1)
            carried = (*pack({name: getattr(sampler, name) for name in STATE}),
                       dual, tracked.count, tracked.mean, tracked.m2)
            try:
                out = self._block(carried, noise_z, noise_u, stage, flags)
            except torch._dynamo.exc.TorchDynamoException as error:
                reason = _first_reason(error)
                raise ConfigError(f"jit_compile=True: torch.compile could not compile the NUTS step with "
                                  f"this potential ({reason}); pass jit_compile=False") from None
            for name, value in unpack(*out[:4]).items():
                setattr(sampler, name, value)
            averaging.t, averaging.g_avg, averaging.x_avg = out[4][:, 1], out[4][:, 2], out[4][:, 3]
            tracked.count, tracked.mean, tracked.m2 = out[5:8]
            sampler.num_gradient_batches += BLOCK_STEPS
            if record is not None:
                _store(*record, positions=out[8], recorded=out[9])

    def _run_block(self, carried: tuple[torch.Tensor, ...], noise_z: torch.Tensor, noise_u: torch.Tensor,
                   stage: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """:data:`BLOCK_STEPS` steps with their adaptation; returns the carried state, then the
        positions (steps, chains, dim) and :data:`RECORDED` (steps, chains, 6) of the block."""
        sampler, target = self.sampler, self.target_accept_prob
        positions = noise_z.new_zeros(noise_z.shape)
        recorded = noise_z.new_zeros(BLOCK_STEPS, noise_z.shape[1], len(RECORDED))

        def unfinished(k: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
            return k < BLOCK_STEPS

        def one_step(k: torch.Tensor, points: torch.Tensor, columns: torch.Tensor, sums: torch.Tensor,
                     checkpoints: torch.Tensor, dual: torch.Tensor, count: torch.Tensor, mean: torch.Tensor,
                     m2: torch.Tensor, positions: torch.Tensor, recorded: torch.Tensor
                     ) -> tuple[torch.Tensor, ...]:
            twin = sampler.twin(unpack(points, columns, sums, checkpoints))
            at = k.view(1)
            twin.noise = [noise_z.index_select(0, at)[0], *noise_u.index_select(0, at)[0].unbind(0)]
            finished = twin.step(twin.iteration < stage)
            accept = twin.accept_sum / twin.num_steps.clamp(min=1)

            averaging = DualAveraging(dual[:, 0], target)
            averaging.t, averaging.g_avg, averaging.x_avg = dual[:, 1], dual[:, 2], dual[:, 3]
            adapting = finished & flags[0]
            twin.step_size = torch.where(adapting, averaging.update(accept, adapting), twin.step_size)
            covariance = RunningCovariance(twin.z, sampler.metric.dense)
            covariance.count, covariance.mean, covariance.m2 = count, mean, m2
            covariance.update(twin.z, finished & flags[1])

            row = torch.stack([finished.to(accept.dtype), twin.iteration.to(accept.dtype),
                               twin.num_steps.to(accept.dtype), twin.depth.to(accept.dtype),
                               twin.sub_diverging.to(accept.dtype), accept], -1)
            return (k + 1, *pack({name: getattr(twin, name) for name in STATE}),
                    torch.stack([averaging.prox_center, averaging.t, averaging.g_avg, averaging.x_avg], 1),
                    covariance.count, covariance.mean, covariance.m2,
                    positions.index_copy(0, at, twin.z[None]), recorded.index_copy(0, at, row[None]))

        start = torch.zeros((), dtype=torch.long, device=noise_z.device)
        return while_loop(unfinished, one_step, (start, *carried, positions, recorded))[1:]


def has_cpp_compiler() -> bool:
    """Whether torch.compile finds a C++ compiler to build its CPU kernels with."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", "g++"), "g++", "clang++"))


def _first_reason(error: Exception) -> str:
    """The line of a torch.compile error that says what it could not trace."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    explained = [line.removeprefix("Explanation:").strip() for line in lines if line.startswith("Explanation:")]
    return (explained or lines or [type(error).__name__])[0]


def _store(warmup_steps: int, samples: torch.Tensor, stats: dict[str, torch.Tensor], *,
           positions: torch.Tensor, recorded: torch.Tensor) -> None:
    """Write the draws a block completed into ``samples`` (chains, num_samples, dim) and ``stats``."""
    steps, chains = recorded[..., 0].bool().nonzero(as_tuple=True)
    if len(chains) == 0:
        return
    draw = recorded[steps, chains, 1].long() - 1 - warmup_steps
    samples[chains, draw] = positions[steps, chains]
    for column, name in enumerate(RECORDED[2:], start=2):
        stats[name][chains, draw] = recorded[steps, chains, column].to(stats[name].dtype)


__all__ = ["BLOCK_STEPS", "RECORDED", "STATE", "CompiledBlocks", "has_cpp_compiler", "pack", "unpack"]
