"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

#: Optimizers :func:`make_optimizer` builds.
OPTIMIZERS = ("adamw", "sgd")
#: Schedules :func:`make_schedule` builds.
LR_SCHEDULES = ("cosine", "constant")


def make_optimizer(
    params: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.9.

    Examples
    --------
    >>> layer = torch.nn.Linear(2, 2)
    >>> type(make_optimizer(layer.parameters(), "sgd", 0.1, 0.0)).__name__
    'SGD'
    """
    params = [p for p in params if p.requires_grad]
    # one fused kernel per step on CUDA instead of a launch per tensor group
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                               weight_decay=weight_decay, **fused)
    raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}.")


def make_schedule(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule: ``"cosine"`` (linear warm-up over 5% of steps, then cosine to 0)
    or ``"constant"``.

    Examples
    --------
    >>> opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    >>> schedule = make_schedule(opt, "cosine", total_steps=100)
    >>> schedule.get_last_lr()  # warm-up: the first step runs at 1/5 of the rate
    [0.2]
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {name!r}.")
    total = max(1, int(total_steps))
    warmup = max(1, round(0.05 * total))

    def factor(step: int) -> float:
        if name == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
