"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from ..exceptions import InputError
from ..params import LR_SCHEDULES, OPTIMIZERS


def make_optimizer(
    params: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float,
    *, capturable: bool = False,
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.9.

    On CUDA the fused implementation is used (one kernel per step). With
    ``capturable=True`` (AdamW only) the learning rate is a device tensor, so a CUDA graph
    that captured the step still follows the schedule (:func:`make_scheduler` updates it in
    place).

    Examples
    --------
    >>> layer = torch.nn.Linear(2, 2)
    >>> type(make_optimizer(layer.parameters(), "sgd", 0.1, 0.0)).__name__
    'SGD'
    """
    params = [p for p in params if p.requires_grad]
    on_cuda = bool(params) and all(p.is_cuda for p in params)
    extra: dict = {"fused": True} if on_cuda else {}
    rate: float | torch.Tensor = lr
    if capturable and on_cuda and name == "adamw":
        rate = torch.tensor(float(lr), device=params[0].device)
        extra["capturable"] = True
    if name == "adamw":
        return torch.optim.AdamW(params, lr=rate, weight_decay=weight_decay, **extra)
    if name == "sgd":
        return torch.optim.SGD(params, lr=rate, momentum=0.9, nesterov=True,
                               weight_decay=weight_decay, **extra)
    raise InputError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}.")


def lr_factor_schedule(name: str, total_steps: int) -> Callable[[int], float]:
    """The factor of the base learning rate at each step.

    ``"cosine"``: linear warm-up over 5% of the steps, then cosine decay to 0.
    ``"constant"``: always 1.

    Examples
    --------
    >>> factor = lr_factor_schedule("cosine", total_steps=100)
    >>> factor(0), factor(4), round(factor(50), 2), factor(100)
    (0.2, 1.0, 0.54, 0.0)
    """
    if name not in LR_SCHEDULES:
        raise InputError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {name!r}.")
    total = max(1, int(total_steps))
    warmup = max(1, round(0.05 * total))

    def factor(step: int) -> float:
        if name == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, name: str,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """torch's ``LambdaLR`` over :func:`lr_factor_schedule`: step it after every optimizer step.

    ``LambdaLR`` fills a tensor learning rate in place (the ``capturable`` AdamW of a CUDA
    graph keeps reading the same tensor), so the graph follows the schedule.

    Examples
    --------
    >>> layer = torch.nn.Linear(2, 2)
    >>> optimizer = make_optimizer(layer.parameters(), "sgd", 0.1, 0.0)
    >>> schedule = make_scheduler(optimizer, "cosine", total_steps=100)
    >>> optimizer.param_groups[0]["lr"]  # the first step warms up: 0.1 * 1/5
    0.020000000000000004
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_schedule(name, total_steps))
