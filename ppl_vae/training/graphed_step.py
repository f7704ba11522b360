"""The training step recorded once as a CUDA graph and replayed: the GPU path without launch overhead.

On a GPU one SVI step of a small VAE (784-400-20, batch 128) is about a
hundred small kernels: the forward pass, the backward pass and the fused Adam
update. Each takes less time to run than Python takes to launch it, so
launched one by one the GPU mostly waits for the CPU. A CUDA graph records
those kernels once (loss, backward, optional gradient clipping, optimizer
step) and replays them with one launch.

Replay runs the recorded kernels on the recorded memory: the batch is copied
into one static input tensor, the gradients and the loss live in the graph's
own memory, and the random numbers of each replay come from the same
generator offsets an eager step would use, so a graphed run follows the eager
run's numbers up to floating-point rounding (``tests/training/test_graphed_step.py``
checks this on a GPU). A batch of another size (the last of an epoch) runs
eagerly on the same parameters and optimizer state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

#: Eager steps on a side stream before the capture, as torch's CUDA-graph recipe asks: they
#: create the optimizer's state, autograd's buffers and the cuBLAS workspaces the graph reuses.
WARMUP_STEPS = 3

#: ``step(x)`` runs one whole training step on the batch ``x`` and returns the detached loss.
Step = Callable[[torch.Tensor], torch.Tensor]


def graph_blocker(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                  x: torch.Tensor, *, direct_loss: bool, constant_beta: bool,
                  processes: int) -> str | None:
    """Why the step cannot be recorded as a CUDA graph, or None when it can.

    The step is recorded only when every tensor it touches stays on one CUDA
    device, its loss is the direct transcription (Pyro's effect handlers run
    Python that may read values back to the host), its KL weight is the same
    at every step (a recorded step keeps the value it was recorded with), it
    runs in one process, and the optimizer is torch's fused Adam (whose kernel
    does not depend on ``capturable``).
    """
    devices = {p.device for p in parameters} | {x.device}
    if len(devices) != 1 or x.device.type != "cuda":
        return "not on one CUDA device"
    if not direct_loss:
        return "the loss runs through Pyro's effect handlers"
    if not constant_beta:
        return "the KL weight changes from step to step"
    if processes > 1:
        return "distributed training"
    if not all(group.get("fused") for group in optimizer.param_groups):
        return "the optimizer is not the fused Adam"
    return None


class GraphedStep:
    """A training step replayed from a CUDA graph for full batches, eager for the others.

    Parameters
    ----------
    step : callable
        ``step(x) -> loss``: zero the gradients, compute the loss of the batch
        ``x``, backpropagate, update; the loss returned detached, shape ().
    optimizer : torch.optim.Optimizer
        The optimizer ``step`` updates (fused Adam; see :func:`graph_blocker`).
    batch_shape : tuple of int
        ``(batch_size, data_dim)``, the shape of the batches that replay.
    like : Tensor
        A tensor of the data's dtype and device.
    """

    def __init__(self, step: Step, optimizer: torch.optim.Optimizer, batch_shape: tuple[int, ...],
                 like: torch.Tensor) -> None:
        self.step = step
        self.optimizer = optimizer
        self.static_x = like.new_empty(batch_shape)
        self.static_loss: torch.Tensor | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0

    def __call__(self, data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """One training step on ``data[index]``.

        Parameters
        ----------
        data : Tensor, shape (num_data, data_dim)
        index : Tensor of int64, shape (batch,)

        Returns
        -------
        Tensor, shape ()
            The step's loss. For a replayed step this is the graph's own
            output tensor, overwritten by the next replay: use it before then.
        """
        if index.shape[0] != self.static_x.shape[0]:
            return self.step(data[index])
        torch.index_select(data, 0, index, out=self.static_x)
        if self.graph is None:
            if self.eager_steps < WARMUP_STEPS:
                self.eager_steps += 1
                with _side_stream():
                    return self.step(self.static_x)
            self._capture()
        self.graph.replay()
        return self.static_loss

    def _capture(self) -> None:
        """Record one step; it runs at the first replay, not here.

        The generator's state is put back after the recording, so that the
        first replay draws the numbers the eager step would have drawn.
        """
        self.graph = torch.cuda.CUDAGraph()
        rng = torch.cuda.get_rng_state(self.static_x.device)
        with _capturable(self.optimizer), torch.cuda.graph(self.graph):
            self.static_loss = self.step(self.static_x)
        torch.cuda.set_rng_state(rng, self.static_x.device)


@contextmanager
def _side_stream() -> Iterator[None]:
    """Run the enclosed work on a fresh stream, ordered after and before the current one."""
    current = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        yield
    current.wait_stream(side)


@contextmanager
def _capturable(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Mark the optimizer capturable while its step is recorded.

    torch refuses to record ``step()`` of an optimizer whose groups are not
    ``capturable``, and warns at every eager step of one that is. The fused
    Adam kernel computes the same update either way (its step count lives on
    the device already), so the flag is set only for the recording; the
    checkpointed settings stay those of an eager run.
    """
    saved = [group["capturable"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["capturable"] = True
    try:
        yield
    finally:
        for group, value in zip(optimizer.param_groups, saved):
            group["capturable"] = value
