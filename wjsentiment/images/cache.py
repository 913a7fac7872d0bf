"""Many inputs -> one bounded store of decoded uint8 images, shared by every estimator.

Each distinct input is decoded once per ``(size, grayscale)``: a second ``fit`` on the same
images, a clone, or another GridSearchCV fold finds its rows already decoded. Inputs are keyed
by content (:func:`~wjsentiment.images.decode.input_key`), not by object identity.

The store keeps its pixels in fixed-size chunks. Chunks live in RAM until the process-wide
budget (:func:`set_cache_budget`) is reached; later chunks are memory-mapped files in the
cache directory, so the decoded set can be larger than memory.
"""

from __future__ import annotations

import os
import tempfile
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .decode import BadImageError, ImageInput, decode_image, describe_input, input_key

#: Images per chunk of the store.
CHUNK_IMAGES = 256


def _default_budget() -> int:
    env = os.environ.get("WJSENTIMENT_CACHE_MEMORY")
    if env:
        return int(float(env))
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(min(total // 4, 16 * 2**30))


_BUDGET = {"bytes": _default_budget(), "dir": os.environ.get("WJSENTIMENT_CACHE_DIR")}
_STORES: dict[tuple[int, bool], DecodedImageStore] = {}
_STORES_LOCK = threading.Lock()


def set_cache_budget(memory_bytes: int | None = None, cache_dir: str | os.PathLike | None = None):
    """Set how many bytes of decoded pixels stay in RAM before the cache spills to disk.

    Parameters
    ----------
    memory_bytes : int, optional
        RAM budget for decoded images, shared by every image size. Defaults to a quarter of
        physical memory (at most 16 GiB), or the ``WJSENTIMENT_CACHE_MEMORY`` variable.
    cache_dir : path, optional
        Where spilled chunks are memory-mapped. Defaults to ``WJSENTIMENT_CACHE_DIR`` or the
        system temporary directory.

    Returns
    -------
    dict
        The settings now in force.

    Examples
    --------
    >>> settings = set_cache_budget()
    >>> settings["memory_bytes"] > 0
    True
    """
    if memory_bytes is not None:
        if int(memory_bytes) < 0:
            raise ValueError(f"memory_bytes must be >= 0, got {memory_bytes!r}.")
        _BUDGET["bytes"] = int(memory_bytes)
    if cache_dir is not None:
        _BUDGET["dir"] = os.fspath(cache_dir)
    return {"memory_bytes": _BUDGET["bytes"], "cache_dir": _BUDGET["dir"] or tempfile.gettempdir()}


def _ram_in_use() -> int:
    return sum(store.ram_bytes for store in _STORES.values())


def _memmap_chunk(shape: tuple[int, ...]) -> np.ndarray:
    directory = _BUDGET["dir"] or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="wjsentiment-pixels-", suffix=".u8", dir=directory)
    os.close(fd)
    chunk = np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)
    if os.name == "posix":
        os.unlink(path)  # the mapping keeps the data; the file goes when the chunk does
    else:  # pragma: no cover - Windows cannot unlink an open mapping
        weakref.finalize(chunk, lambda p=path: os.path.exists(p) and os.remove(p))
    return chunk


@dataclass
class DecodeResult:
    """Where each input of one call landed in the store.

    Attributes
    ----------
    rows : numpy.ndarray
        Row of each input in the store, -1 for inputs that failed to decode.
    errors : list of (int, BadImageError)
        Position and error of each input that failed.
    """

    rows: np.ndarray
    errors: list[tuple[int, BadImageError]] = field(default_factory=list)


class DecodedImageStore:
    """Decoded images of one ``(size, grayscale)``, keyed by content.

    Use :func:`get_store` to get the process-wide store rather than making one.

    Examples
    --------
    >>> store = DecodedImageStore(16, grayscale=False)
    >>> result = store.add([np.zeros((20, 20, 3), dtype=np.uint8)] * 2)
    >>> result.rows.tolist(), store.gather(result.rows).shape
    ([0, 0], (2, 16, 16, 3))
    """

    def __init__(self, size: int, grayscale: bool) -> None:
        self.size = int(size)
        self.grayscale = bool(grayscale)
        self._chunks: list[np.ndarray] = []
        self._rows: dict[tuple, int] = {}
        self._key_of_row: dict[int, tuple] = {}
        self._bad: dict[tuple, BadImageError] = {}
        self._n = 0
        self._lock = threading.Lock()
        self.ram_bytes = 0

    @property
    def image_bytes(self) -> int:
        return self.size * self.size * 3

    def __len__(self) -> int:
        return len(self._rows)

    def _allocate(self) -> int:
        row = self._n
        if row // CHUNK_IMAGES >= len(self._chunks):
            shape = (CHUNK_IMAGES, self.size, self.size, 3)
            nbytes = int(np.prod(shape))
            if _ram_in_use() + nbytes <= _BUDGET["bytes"]:
                self._chunks.append(np.empty(shape, dtype=np.uint8))
                self.ram_bytes += nbytes
            else:
                self._chunks.append(_memmap_chunk(shape))
        self._n += 1
        return row

    def _write(self, row: int, pixels: np.ndarray) -> None:
        self._chunks[row // CHUNK_IMAGES][row % CHUNK_IMAGES] = pixels

    @property
    def spilled(self) -> bool:
        """Whether any chunk of this store lives on disk."""
        return any(isinstance(c, np.memmap) for c in self._chunks)

    def add(
        self,
        inputs: Sequence[ImageInput],
        *,
        num_workers: int = 1,
        verbose: int = 0,
    ) -> DecodeResult:
        """Decode the inputs not yet in the store, and return the rows of all of them.

        Parameters
        ----------
        inputs : sequence of image inputs
            Paths, PIL images or uint8 arrays.
        num_workers : int, default=1
            Decoding threads (PIL releases the GIL while decoding and resizing).
        verbose : int, default=0
            Show a progress bar when > 0 and there is work to do.

        Returns
        -------
        DecodeResult
        """
        keys = [input_key(item) for item in inputs]
        rows = np.full(len(inputs), -1, dtype=np.int64)
        errors: list[tuple[int, BadImageError]] = []
        todo: dict[tuple, tuple[int, int]] = {}  # key -> (row, first position)
        with self._lock:
            for pos, key in enumerate(keys):
                if key in self._rows:
                    rows[pos] = self._rows[key]
                elif key in self._bad:
                    errors.append((pos, self._bad[key]))
                elif key in todo:
                    rows[pos] = todo[key][0]
                else:
                    row = self._allocate()
                    todo[key] = (row, pos)
                    rows[pos] = row

        def work(key: tuple, row: int, pos: int) -> tuple[tuple, BadImageError | None]:
            try:
                self._write(row, decode_image(inputs[pos], self.size, self.grayscale))
                return key, None
            except BadImageError as exc:
                return key, exc
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad image
                reason = f"{type(exc).__name__}: {exc}"
                return key, BadImageError(describe_input(inputs[pos]), reason)

        failed: dict[tuple, BadImageError] = {}
        if todo:
            bar = tqdm(total=len(todo), desc=f"decode {self.size}px", unit="img",
                       disable=verbose <= 0, leave=False)
            with ThreadPoolExecutor(max_workers=max(1, int(num_workers))) as pool:
                futures = [pool.submit(work, key, row, pos) for key, (row, pos) in todo.items()]
                for future in futures:
                    key, exc = future.result()
                    if exc is not None:
                        failed[key] = exc
                    bar.update(1)
            bar.close()
            with self._lock:
                for key, (row, _) in todo.items():
                    if key in failed:
                        self._bad[key] = failed[key]
                    else:
                        self._rows[key] = row
                        self._key_of_row[row] = key
        if failed:
            for pos, key in enumerate(keys):
                if key in failed:
                    rows[pos] = -1
                    errors.append((pos, failed[key]))
            errors.sort(key=lambda item: item[0])
        return DecodeResult(rows=rows, errors=errors)

    def input_keys(self, rows: np.ndarray) -> list[tuple]:
        """The :func:`~wjsentiment.images.decode.input_key` each row was decoded from.

        Examples
        --------
        >>> store = DecodedImageStore(4, grayscale=False)
        >>> rows = store.add([np.zeros((4, 4, 3), dtype=np.uint8)]).rows
        >>> store.input_keys(rows)[0][0]
        'array'
        """
        with self._lock:
            return [self._key_of_row[int(r)] for r in rows]

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Copy the given rows into one ``(len(rows), size, size, 3)`` uint8 array.

        Each image is copied once, straight into ``out`` (a pinned staging buffer, say):
        no temporary array. numpy releases the GIL while copying, so threads can gather
        the parts of one batch at the same time.

        Examples
        --------
        >>> store = DecodedImageStore(2, grayscale=False)
        >>> rows = store.add([np.full((2, 2, 3), v, dtype=np.uint8) for v in (7, 9)]).rows
        >>> store.gather(rows[::-1])[:, 0, 0, 0].tolist()
        [9, 7]
        """
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            out = np.empty((len(rows), self.size, self.size, 3), dtype=np.uint8)
        elif out.shape[0] != len(rows):
            raise ValueError(f"out holds {out.shape[0]} images, rows name {len(rows)}.")
        chunks, offsets = np.divmod(rows, CHUNK_IMAGES)
        for i, (c, o) in enumerate(zip(chunks.tolist(), offsets.tolist())):
            out[i] = self._chunks[c][o]
        return out


def get_store(size: int, grayscale: bool = False) -> DecodedImageStore:
    """The process-wide decoded-image store for one image size and colour mode.

    Examples
    --------
    >>> get_store(32) is get_store(32)
    True
    """
    key = (int(size), bool(grayscale))
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = DecodedImageStore(*key)
        return _STORES[key]


def clear_image_cache() -> None:
    """Forget every decoded image (RAM and spilled chunks alike).

    Examples
    --------
    >>> clear_image_cache()
    """
    with _STORES_LOCK:
        _STORES.clear()
