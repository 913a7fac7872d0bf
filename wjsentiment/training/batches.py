"""Batches on the device: decoded uint8 images or cached features, in and out of the model.

On CUDA, the uint8 images of a fit are copied to the GPU once when they fit in its memory,
and each batch is then an index into that tensor: no host work per epoch. Otherwise each
batch is gathered from the decoded-image store by a background thread, pinned, and copied
without blocking while the previous batch trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..images.cache import DecodedImageStore

#: Share of free GPU memory the resident uint8 images may take.
GPU_RESIDENT_SHARE = 0.4


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
        Keep all images on the device. None: yes on CUDA when they take less than
        :data:`GPU_RESIDENT_SHARE` of free memory.
    """

    kind = "images"

    def __init__(self, store: DecodedImageStore, rows: np.ndarray, device: torch.device,
                 resident: bool | None = None) -> None:
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        nbytes = len(self.rows) * store.image_bytes
        if resident is None:
            resident = False
            if self.cuda:
                free, _ = torch.cuda.mem_get_info(self.device)
                resident = nbytes <= GPU_RESIDENT_SHARE * free
        self.pixels: torch.Tensor | None = None
        if resident:
            self.pixels = torch.empty((len(self.rows), store.size, store.size, 3),
                                      dtype=torch.uint8, device=self.device)
            step = 1024
            for start in range(0, len(self.rows), step):
                part = torch.from_numpy(store.gather(self.rows[start:start + step]))
                if self.cuda:
                    part = part.pin_memory()
                self.pixels[start:start + step].copy_(part, non_blocking=True)

    def __len__(self) -> int:
        return len(self.rows)

    def _host(self, idx: np.ndarray) -> torch.Tensor:
        part = torch.from_numpy(self.store.gather(self.rows[idx]))
        return part.pin_memory() if self.cuda else part

    def _to_float(self, u8: torch.Tensor) -> torch.Tensor:
        # NHWC uint8 -> NCHW float view whose memory is channels_last: no transpose copy.
        return u8.permute(0, 3, 1, 2).float().div_(255.0)

    def iterate(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """Yield one float batch per index array, prefetching the next one."""
        if self.pixels is not None:
            for index in device_batches(batches, self.device):
                yield self._to_float(self.pixels.index_select(0, index))
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._host, batches[0]) if batches else None
            for k in range(len(batches)):
                host = pending.result()
                if k + 1 < len(batches):
                    pending = pool.submit(self._host, batches[k + 1])
                yield self._to_float(host.to(self.device, non_blocking=True))


class FeatureBatches:
    """Precomputed backbone features of one fit or predict, on the device."""

    kind = "features"

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
    """Cut an index order into batches; with ``drop_single``, a last batch of one is dropped
    (batch norm cannot train on a single sample).

    Examples
    --------
    >>> [len(b) for b in split_batches(np.arange(65), 32, drop_single=True)]
    [32, 32]
    """
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_single and len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches
