"""Batches on the device: decoded uint8 images or cached features, in and out of the model,
and the precision they run in.

Below both :mod:`wjsentiment.models` (the frozen-feature cache runs the backbone over image
batches) and :mod:`wjsentiment.training` (the loop trains on them).

On CUDA, the uint8 images of a fit are copied to the GPU once when they fit in its memory,
and each batch is then an index into that tensor: no host work per epoch. Otherwise (and for
one-pass work such as ``predict_proba``) batches stream: threads gather the next batches
from the decoded-image store straight into a small ring of reused pinned buffers, and a
separate CUDA stream copies each one to the GPU while the previous batch computes.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .images.cache import DecodedImageStore

#: Share of free GPU memory the resident uint8 images may take.
GPU_RESIDENT_SHARE = 0.4

#: Pinned staging buffers of a stream: one batch computing, one copying, one being gathered.
STAGING_DEPTH = 3

#: Threads that gather one batch's images together on CUDA (copying from the store is
#: memory-bound; a few threads keep up with the GPU, more only contend).
GATHER_THREADS = 4

#: Images per transfer when the images of a fit are uploaded to stay on the GPU.
UPLOAD_CHUNK = 256


class ImageBatches:
    """The decoded images of one fit or predict, served as ``[0, 1]`` float batches.

    Parameters
    ----------
    store : DecodedImageStore
        Where the pixels are.
    rows : numpy.ndarray
        Store row of each sample.
    device : torch.device
        Where batches go.
    resident : bool or None, default=None
        Keep all images on the device, for sources that are read once per epoch. None: yes
        on CUDA when they take less than :data:`GPU_RESIDENT_SHARE` of free memory. False
        streams every batch from the host, which suits a single pass.
    """

    def __init__(self, store: DecodedImageStore, rows: np.ndarray, device: torch.device,
                 resident: bool | None = None) -> None:
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)
        self.device = torch.device(device)
        if resident is None:
            resident = self.device.type == "cuda" and (
                len(self.rows) * store.image_bytes
                <= GPU_RESIDENT_SHARE * torch.cuda.mem_get_info(self.device)[0])
        self.pixels: torch.Tensor | None = None
        if resident:
            self.pixels = torch.empty((len(self.rows), store.size, store.size, 3),
                                      dtype=torch.uint8, device=self.device)
            chunks = split_batches(np.arange(len(self.rows)), UPLOAD_CHUNK)
            for index, part in zip(chunks, self._stream(chunks)):
                self.pixels[index[0]:index[-1] + 1].copy_(part)

    def __len__(self) -> int:
        return len(self.rows)

    def iterate(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """Yield one float batch per index array (positions in ``rows``)."""
        if self.pixels is not None:
            uint8_batches = (self.pixels.index_select(0, index)
                             for index in device_batches(batches, self.device))
        else:
            uint8_batches = self._stream(batches)
        for u8 in uint8_batches:
            # NHWC uint8 -> NCHW float view whose memory is channels_last: no transpose copy.
            yield u8.permute(0, 3, 1, 2).float().div_(255.0)

    def _stream(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """uint8 NHWC batches on the device: on CUDA gathered and copied ahead of their use.

        Elsewhere each batch is gathered in this thread when it is needed. Gathering (one
        block copy per run of consecutive rows) takes a small share of a batch's compute on
        a CPU; a thread gathering ahead would save that share but hold the GIL against the
        compute at every batch."""
        if self.device.type == "cuda" and batches:
            yield from _PinnedStream(self.store, [self.rows[b] for b in batches], self.device)
            return
        for batch in batches:
            yield torch.from_numpy(self.store.gather(self.rows[batch])).to(self.device)


class _PinnedStream:
    """Store rows -> pinned host buffers -> GPU, overlapped with the compute that uses them.

    Batch ``k`` is gathered into pinned buffer ``k % STAGING_DEPTH`` by a background thread
    (itself splitting the copy over :data:`GATHER_THREADS` threads), copied on a side stream,
    and handed to the compute stream behind an event. A buffer is refilled only after the
    event of its previous copy has completed, and the copy of batch ``k + 1`` is issued before
    batch ``k`` is handed out, so copies overlap the compute of the batch before.
    """

    def __init__(self, store: DecodedImageStore, row_batches: list[np.ndarray],
                 device: torch.device) -> None:
        self.store, self.row_batches, self.device = store, row_batches, device
        largest = max(len(b) for b in row_batches)
        shape = (largest, store.size, store.size, 3)
        # Pinned buffers come from torch's caching host allocator: later streams reuse them.
        self.buffers = [torch.empty(shape, dtype=torch.uint8, pin_memory=True)
                        for _ in range(min(STAGING_DEPTH, len(row_batches)))]
        self.copied: list[torch.cuda.Event | None] = [None] * len(self.buffers)
        self.copy_stream = torch.cuda.Stream(device)

    def _fill(self, k: int, gather_pool: ThreadPoolExecutor) -> torch.Tensor:
        slot = k % len(self.buffers)
        if self.copied[slot] is not None:
            self.copied[slot].synchronize()  # its last copy to the GPU has finished
        rows = self.row_batches[k]
        view = self.buffers[slot][:len(rows)]
        out = view.numpy()
        parts = np.array_split(np.arange(len(rows)), min(GATHER_THREADS, len(rows)))
        list(gather_pool.map(lambda p: self.store.gather(rows[p], out[p[0]:p[-1] + 1]),
                             [p for p in parts if len(p)]))
        return view

    def __iter__(self) -> Iterator[torch.Tensor]:
        n, depth = len(self.row_batches), len(self.buffers)
        compute = torch.cuda.current_stream(self.device)
        threads = max(1, min(GATHER_THREADS, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=1) as feeder, \
                ThreadPoolExecutor(max_workers=threads) as gather_pool:
            filled = deque(feeder.submit(self._fill, k, gather_pool) for k in range(depth))

            def send(k: int) -> tuple[torch.Tensor, torch.cuda.Event]:
                host = filled.popleft().result()
                with torch.cuda.stream(self.copy_stream):
                    on_device = host.to(self.device, non_blocking=True)
                    done = torch.cuda.Event()
                    done.record(self.copy_stream)
                self.copied[k % depth] = done
                if k + depth < n:
                    filled.append(feeder.submit(self._fill, k + depth, gather_pool))
                return on_device, done

            following = send(0)
            for k in range(n):
                on_device, done = following
                if k + 1 < n:
                    following = send(k + 1)
                compute.wait_event(done)
                on_device.record_stream(compute)  # not reused while the compute reads it
                yield on_device


class FeatureBatches:
    """Precomputed backbone features of one fit or predict, on the device."""

    def __init__(self, features: torch.Tensor, device: torch.device) -> None:
        self.features = features.to(device)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def iterate(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """Yield the features of each index array."""
        for index in device_batches(batches, self.device):
            yield self.features.index_select(0, index)


def device_batches(batches: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """The index arrays of an epoch on the device, copied in one transfer rather than one each.

    Examples
    --------
    >>> [b.tolist() for b in device_batches([np.array([2, 0]), np.array([1])], "cpu")]
    [[2, 0], [1]]
    """
    if not batches:
        return []
    joined = torch.from_numpy(np.concatenate(batches)).to(device, non_blocking=True)
    return list(joined.split([len(b) for b in batches]))


def split_batches(order: np.ndarray, batch_size: int, *, drop_single: bool = False
                  ) -> list[np.ndarray]:
    """Cut an index order into batches; with ``drop_single``, a last batch of one left over
    from a larger ``batch_size`` is dropped (batch norm cannot train on a single sample).

    Examples
    --------
    >>> [len(b) for b in split_batches(np.arange(65), 32, drop_single=True)]
    [32, 32]
    >>> len(split_batches(np.arange(3), 1, drop_single=True))  # batches of one by request
    3
    """
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_single and batch_size > 1 and len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def autocast(device: torch.device, precision: str, *, cache: bool = True):
    """bf16 autocast on the device for ``precision="bf16"``, nothing for ``"fp32"``.

    Examples
    --------
    >>> with autocast("cpu", "fp32"):
    ...     torch.ones(1).dtype
    torch.float32
    """
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                              cache_enabled=cache)
    return contextlib.nullcontext()
