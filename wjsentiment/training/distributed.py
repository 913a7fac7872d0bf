"""Data-parallel training under torchrun: the process group, sharding and reductions.

When ``fit`` runs in a process that ``torchrun`` started (``WORLD_SIZE`` > 1 in the
environment) and ``distributed="auto"``, :func:`data_parallel` joins (or creates) the default
process group and returns a :class:`DataParallel` that the estimator and the training loop ask
for everything that differs between ranks:

- the device: one process per GPU, rank ``r`` on ``cuda:LOCAL_RANK``;
- the epoch's order: the same global order on every rank (it comes from the shared seed),
  padded by wrapping around to a multiple of the number of ranks, and each rank takes every
  ``world_size``-th position from its rank on. Every rank then runs the same number of steps,
  which ``DistributedDataParallel`` requires;
- the network, wrapped in ``DistributedDataParallel`` for the training steps (its gradients
  are all-reduced);
- reductions: the training losses and predictions of all ranks gathered for ``history_``, a
  value (the seed, an epoch's record, the temperature) taken from rank 0, a stop request of
  any rank, and at the end rank 0's weights broadcast to every rank so that all return the
  same model, bit for bit.

Outside torchrun (or with ``distributed=False``) the same questions go to :data:`LOCAL`,
which answers them for one process without touching ``torch.distributed``.

Every collective waits at most :func:`timeout_seconds` for the other ranks: a rank that
raises or dies makes the others fail with an error within that time (torchrun also stops
the other ranks as soon as one exits with an error), never hang.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..exceptions import InputError

__all__ = ["DEFAULT_TIMEOUT", "LOCAL", "TIMEOUT_ENV", "DataParallel", "data_parallel",
           "is_main_process", "launched_by_torchrun", "timeout_seconds"]

#: Seconds a rank waits in a collective (a gradient all-reduce, a reduction of the metrics)
#: for the others before it fails. Long enough for the slowest rank to finish an epoch's
#: validation while the others wait; short enough that a lost rank ends the job.
DEFAULT_TIMEOUT = 600.0
#: The environment variable that overrides :data:`DEFAULT_TIMEOUT` (seconds) when ``fit``
#: creates the process group.
TIMEOUT_ENV = "WJSENTIMENT_DISTRIBUTED_TIMEOUT"


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun (or a launcher setting the same
    variables) started: ``WORLD_SIZE`` > 1.

    Examples
    --------
    >>> launched_by_torchrun() == (int(os.environ.get("WORLD_SIZE", "1")) > 1)
    True
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout_seconds() -> float:
    """The process-group timeout: ``WJSENTIMENT_DISTRIBUTED_TIMEOUT``, else
    :data:`DEFAULT_TIMEOUT`.

    Raises
    ------
    ValueError
        If the variable is not a positive number of seconds.
    """
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{TIMEOUT_ENV}={text!r} must be a positive number of seconds; "
                         f"set it to e.g. 600, or unset it.")
    return value


def is_main_process() -> bool:
    """Whether this process is rank 0 (or not one of several): the one that writes files.

    Reads the process group when there is one, else torchrun's ``RANK`` variable, so it also
    answers for ranks that trained independently (``distributed=False``).

    Examples
    --------
    >>> is_main_process() == (int(os.environ.get("RANK", "0")) == 0)
    True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


class Local:
    """One process: every answer of :class:`DataParallel` for a world of one rank."""

    rank = 0
    world_size = 1

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on."""
        return device

    def shard(self, order: np.ndarray) -> np.ndarray:
        """This rank's part of an epoch's global ``order``."""
        return order

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module the training steps call."""
        return module

    def gather(self, array: np.ndarray) -> np.ndarray:
        """Every rank's ``array`` (of one shape on all), joined along the last axis."""
        return np.concatenate(self._all_gather(array), axis=-1)

    def _all_gather(self, array: np.ndarray) -> list[np.ndarray]:
        """Every rank's ``array`` (of one shape and type on all ranks), by rank."""
        return [array]

    def from_rank0(self, value: Any) -> Any:
        """Rank 0's ``value`` (a picklable object), on every rank."""
        return value

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on some rank."""
        return bool(flag)

    def broadcast_state(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers of ``module``, in place."""

    def map_shards(self, compute: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
        """``compute(np.arange(n))``, each rank computing a share of the positions: rank
        ``r`` computes positions ``r, r + world_size, ...`` (its :meth:`shard`, padded to one
        length); the results of all ranks are gathered and put back in order."""
        values = compute(self.shard(np.arange(n)))
        out = np.empty((n, *values.shape[1:]), dtype=values.dtype)
        for rank, part in enumerate(self._all_gather(values)):
            out[rank::self.world_size] = part[:len(range(rank, n, self.world_size))]
        return out

    @contextlib.contextmanager
    def failures(self) -> Iterator[None]:
        """Turn a failed collective into an error that says what probably happened."""
        yield


#: The answers for a single process.
LOCAL = Local()


class DataParallel(Local):
    """This rank's view of a data-parallel run: see the module's description.

    Made by :func:`data_parallel`, after the default process group exists.
    """

    def __init__(self) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.comm_device = (torch.device("cuda", torch.cuda.current_device())
                            if dist.get_backend() == "nccl" else torch.device("cpu"))

    def device(self, device: torch.device) -> torch.device:
        """``cuda:LOCAL_RANK`` for a CUDA device without an index (one GPU per process)."""
        device = torch.device(device)
        if device.type == "cuda":
            if device.index is None:
                device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def shard(self, order: np.ndarray) -> np.ndarray:
        per_rank = math.ceil(len(order) / self.world_size)
        padded = np.resize(np.asarray(order), per_rank * self.world_size)  # wraps around
        return padded[self.rank::self.world_size]

    def wrap(self, module: nn.Module) -> nn.Module:
        params = next(module.parameters())
        ids = [params.device] if params.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def _all_gather(self, array: np.ndarray) -> list[np.ndarray]:
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.comm_device)
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return [part.cpu().numpy() for part in parts]

    def from_rank0(self, value: Any) -> Any:
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]

    def any(self, flag: bool) -> bool:
        tensor = torch.tensor([int(bool(flag))], device=self.comm_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    @torch.no_grad()
    def broadcast_state(self, module: nn.Module) -> None:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    @contextlib.contextmanager
    def failures(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError as exc:
            if not _collective_failure(exc):
                raise
            raise RuntimeError(
                f"Data-parallel fit, rank {self.rank} of {self.world_size}: a collective "
                f"operation failed ({exc}). Another rank has probably failed, stopped or is "
                f"stuck (see its output); ranks wait at most {timeout_seconds():g} s for each "
                f"other ({TIMEOUT_ENV})."
            ) from exc


def _collective_failure(exc: RuntimeError) -> bool:
    """Whether ``exc`` comes from torch.distributed (a backend error, a timeout, a lost
    peer) rather than from the training itself."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        mark in text for mark in ("gloo", "NCCL", "Timed out", "Connection closed",
                                  "Connection reset"))


def data_parallel(setting: str | bool, device: torch.device) -> Local:
    """The data-parallel context of a ``fit`` with ``distributed=setting`` on ``device``.

    :data:`LOCAL` with ``setting=False`` or outside torchrun. Otherwise the default process
    group (created here if there is none: ``nccl`` on CUDA, ``gloo`` on the CPU, with a
    timeout of :func:`timeout_seconds`) as a :class:`DataParallel`. A group created here
    stays for later fits of the process, and is destroyed when it exits.

    Raises
    ------
    RuntimeError
        If torch was built without ``torch.distributed``.
    """
    if setting is False or not launched_by_torchrun():
        return LOCAL
    if not dist.is_available():
        raise RuntimeError("distributed='auto' under torchrun needs torch.distributed, which "
                           "this torch build lacks; pass distributed=False to train each "
                           "process on its own.")
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_seconds()))
        # Torn down before the interpreter exits: a gloo group left to the exit's destructors
        # may abort the process ("terminate called") while another rank closes its sockets.
        atexit.register(_destroy_group)
    return DataParallel()


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
