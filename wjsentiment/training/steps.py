"""One optimisation step, eager or replayed from a CUDA graph.

At small batch sizes a GPU spends most of a step waiting for Python to launch kernels. A
CUDA graph records the forward pass, backward pass and optimizer step once and replays them
with a single launch. :class:`GraphedStep` does that after a few eager warm-up steps, and
falls back to eager steps if capture fails.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..batches import autocast
from ..exceptions import CudaGraphWarning, warn


class EagerStep:
    """Forward, loss, backward and optimizer step, run op by op."""

    def __init__(self, module: nn.Module, criterion: Callable[..., torch.Tensor],
                 optimizer: torch.optim.Optimizer, device: torch.device, precision: str) -> None:
        self.module, self.criterion, self.optimizer = module, criterion, optimizer
        self.device, self.precision = torch.device(device), precision

    def __call__(self, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
        """Train on one batch of samples weighted by ``weight``; return the (detached) loss
        and logits."""
        with autocast(self.device, self.precision):
            logits = self.module(x)
        loss = self.criterion(logits.float(), target, weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach()


class GraphedStep(EagerStep):
    """The same step, captured in a CUDA graph for batches of one fixed size.

    The first ``warmup`` batches run eagerly on a side stream (as CUDA graph capture
    requires); the next batch is captured and every later batch of the same size replays
    the graph. Batches of another size run eagerly. The optimizer must have been made with
    ``capturable=True`` so the learning rate can change between replays.

    Warm-up, capture and replay run with the model's GPU as the current device and on streams
    of that GPU, so a model on ``cuda:1`` is captured and replayed there whatever device the
    calling thread has current.
    """

    def __init__(self, *args, batch_size: int, warmup: int = 3) -> None:
        super().__init__(*args)
        self.batch_size, self.warmup = batch_size, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.steps = 0
        self.side = torch.cuda.Stream(self.device)
        self.capture_stream = torch.cuda.Stream(self.device)

    def _capture(self, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
        self.static_x = x.clone(memory_format=torch.channels_last)
        self.static_target, self.static_weight = target.clone(), weight.clone()
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        # "thread_local": only this thread is barred from unsafe CUDA calls while capturing.
        # The default ("global") would make such calls fail in every thread of the process,
        # e.g. the thread that fills the pinned buffers of a streamed fit, or another
        # ensemble member training on another GPU.
        with torch.cuda.graph(graph, stream=self.capture_stream,
                              capture_error_mode="thread_local"):
            with autocast(self.device, self.precision, cache=False):
                logits = self.module(self.static_x)
            loss = self.criterion(logits.float(), self.static_target, self.static_weight)
            loss.backward()
            self.optimizer.step()
        self.static_loss, self.static_logits = loss.detach(), logits.detach()
        self.graph = graph

    def __call__(self, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
        if self.failed or len(target) != self.batch_size:
            return super().__call__(x, target, weight)
        with torch.cuda.device(self.device):
            return self._graphed(x, target, weight)

    def _graphed(self, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
        self.steps += 1
        if self.graph is None and self.steps <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                out = super().__call__(x, target, weight)
            torch.cuda.current_stream(self.device).wait_stream(self.side)
            return out
        if self.graph is None:
            try:
                self._capture(x, target, weight)
            except Exception as exc:  # noqa: BLE001 - any capture failure falls back to eager
                self.failed = True  # (self.graph is still None: it is set once captured)
                warn(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); training "
                     "continues without it.", CudaGraphWarning)
                torch.cuda.synchronize(self.device)
                return super().__call__(x, target, weight)
        else:
            self.static_x.copy_(x)
            self.static_target.copy_(target)
            self.static_weight.copy_(weight)
        self.graph.replay()
        return self.static_loss, self.static_logits
