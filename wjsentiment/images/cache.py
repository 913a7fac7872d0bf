"""Many inputs -> one bounded store of decoded uint8 images, shared by every estimator.

Each distinct input is decoded once per ``(size, grayscale)``: a second ``fit`` on the same
images, a clone, or another GridSearchCV fold finds its rows already decoded. Inputs are keyed
by content (:func:`~wjsentiment.images.decode.input_key`), not by object identity.

**Budgets.** The store keeps its pixels in chunks of :data:`CHUNK_IMAGES` rows. A new chunk
lives in RAM while the RAM held by all stores stays within the memory budget, and otherwise in
a memory-mapped file in the cache folder while the disk held stays within the disk budget
(:func:`wjsentiment.set_config`). Past both, new images take the rows of the least recently used
ones. A chunk is the unit that is held or given back, so the budgets are met to within one
chunk per store, rounded down.

**Pins.** Rows that a call is working on are pinned (``add(..., pin=True)``): a pinned row is
never evicted or reused, whatever the budgets. The budgets bound what is kept for reuse between
calls, not what one call needs: a ``fit`` on more images than the budgets hold gets more
chunks (spilled to disk), and when its rows are released the least recently used chunks are
given back until the store is within its budgets again (a spilled chunk's file goes with it, so
disk use falls).

Reading pixels (:meth:`DecodedImageStore.gather`) takes no lock: it is on the training hot
path. The bookkeeping (which key is in which row, pins, eviction) is under one process-wide
lock and never waits on decoding.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import InitVar, dataclass, field

import numpy as np
import torch

from ..config import get_config, on_change
from ..exceptions import InputError
from ..progress import progress
from .decode import BadImageError, ImageInput, decode_image, input_key
from .device import decode_files_on_device

#: Images per chunk of the store: the unit of RAM or disk that is held or given back.
CHUNK_IMAGES = 256

#: Guards the bookkeeping of every store, and the registry of stores.
_LOCK = threading.Lock()
_STORES: dict[tuple[int, bool], DecodedImageStore] = {}
#: Every store alive, registered or not: they share the budgets.
_LIVE: weakref.WeakSet[DecodedImageStore] = weakref.WeakSet()
#: Releases of rows whose :class:`DecodeResult` was garbage collected while the lock was busy.
_RELEASE_LATER: deque[Callable[[], None]] = deque()
#: Ticks for "least recently used": a row's tick is set when it is last released.
_CLOCK = itertools.count(1)


def _budgets_changed(names: set[str]) -> None:
    """Give back at once what is over a lowered budget (a :func:`~wjsentiment.config.on_change`
    listener)."""
    if names & {"cache_memory_bytes", "cache_disk_bytes"}:
        with _LOCK:
            _settle()


on_change(_budgets_changed)


def _held(on_disk: bool) -> int:
    return sum(store.disk_bytes if on_disk else store.ram_bytes for store in _LIVE)


def _memmap_chunk(shape: tuple[int, ...]) -> np.ndarray:
    """A chunk in a nameless file of the cache folder: the mapping keeps the file open, and
    the system deletes it when the chunk goes."""
    directory = get_config()["cache_dir"] or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(prefix="wjsentiment-pixels-", suffix=".u8", dir=directory) as fh:
        return np.memmap(fh, dtype=np.uint8, mode="w+", shape=shape)


def _settle() -> None:
    """Apply the releases queued by the garbage collector, then give back the least recently
    used unpinned chunks until RAM and disk are within their budgets (or only pinned chunks
    are left). Caller holds ``_LOCK``."""
    while _RELEASE_LATER:
        _RELEASE_LATER.popleft()()
    settings = get_config()
    for on_disk, budget in ((False, settings["cache_memory_bytes"]),
                            (True, settings["cache_disk_bytes"])):
        held = _held(on_disk)
        if held <= budget:
            continue
        idle = [chunk for store in list(_LIVE) for chunk in store.idle_chunks(on_disk)]
        for _, give_back in sorted(idle, key=lambda chunk: chunk[0]):
            if held <= budget:
                break
            held -= give_back()


def _without_frames(exc: BaseException) -> BaseException:
    """``exc`` with the tracebacks of its chain dropped, so that keeping it keeps no decoder
    frame alive (with the image, its buffers and the inputs of the call)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


@dataclass
class DecodeResult:
    """Where each input of one call landed in the store.

    A result of ``add(..., pin=True)`` holds its rows pinned (never evicted or reused) until
    :meth:`release`, the end of a ``with`` block on it, or its garbage collection, whichever
    comes first.

    Attributes
    ----------
    rows : numpy.ndarray
        Row of each input in the store, -1 for inputs that failed to decode.
    errors : list of (int, BadImageError)
        Position and error of each input that failed.

    Examples
    --------
    >>> store = DecodedImageStore(8, grayscale=False)
    >>> with store.add([np.zeros((8, 8, 3), dtype=np.uint8)], pin=True) as result:
    ...     store.gather(result.rows).shape
    (1, 8, 8, 3)
    >>> result.pinned
    False
    """

    rows: np.ndarray
    errors: list[tuple[int, BadImageError]] = field(default_factory=list)
    #: What unpins the rows (``unpin(blocking=...)``); None: they are not pinned.
    unpin: InitVar[Callable[..., None] | None] = None
    _lease: weakref.finalize | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self, unpin: Callable[..., None] | None) -> None:
        if unpin is not None:  # the garbage collector may run while this thread holds _LOCK
            self._lease = weakref.finalize(self, unpin, blocking=False)
            self._lease.atexit = False

    @property
    def pinned(self) -> bool:
        """Whether the rows are still pinned."""
        return self._lease is not None and self._lease.alive

    def release(self) -> None:
        """Unpin the rows: the store may evict or reuse them from now on. Safe to repeat."""
        lease = self._lease.detach() if self._lease is not None else None
        if lease is not None:
            _, unpin, _, _ = lease
            unpin(blocking=True)

    def __enter__(self) -> DecodeResult:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class DecodedImageStore:
    """Decoded images of one ``(size, grayscale)``, keyed by content, within the budgets.

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
        self.chunk_images = CHUNK_IMAGES
        self._chunks: list[np.ndarray | None] = []  # None: a chunk given back
        self._rows: dict[tuple, int] = {}
        self._key_of_row: dict[int, tuple] = {}
        self._bad: dict[tuple, BadImageError] = {}
        self._free: set[int] = set()  # rows of held chunks that hold nothing
        self._pins = np.zeros(0, dtype=np.int64)
        self._last_use = np.zeros(0, dtype=np.int64)
        with _LOCK:
            _LIVE.add(self)

    @property
    def image_bytes(self) -> int:
        """Bytes of one decoded image (``size * size * 3``)."""
        return self.size * self.size * 3

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one chunk of the store, the unit that is held or given back."""
        return self.chunk_images * self.image_bytes

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def ram_bytes(self) -> int:
        """Bytes of this store's chunks in RAM (plain arrays; spilled ones are memmaps)."""
        return self.chunk_bytes * sum(type(chunk) is np.ndarray for chunk in self._chunks)

    @property
    def disk_bytes(self) -> int:
        """Bytes of this store's chunks in spill files."""
        return self.chunk_bytes * sum(isinstance(chunk, np.memmap) for chunk in self._chunks)

    @property
    def spilled(self) -> bool:
        """Whether any chunk of this store lives on disk."""
        return self.disk_bytes > 0

    # ------------------------------------------------- bookkeeping (caller holds _LOCK)
    def _new_chunk(self, on_disk: bool) -> None:
        shape = (self.chunk_images, self.size, self.size, 3)
        chunk = _memmap_chunk(shape) if on_disk else np.empty(shape, dtype=np.uint8)
        index = next((i for i, c in enumerate(self._chunks) if c is None), None)
        if index is None:
            index = len(self._chunks)
            self._chunks.append(None)
            grow = np.zeros(self.chunk_images, dtype=np.int64)
            self._pins = np.concatenate([self._pins, grow])
            self._last_use = np.concatenate([self._last_use, grow])
        self._chunks[index] = chunk
        first = index * self.chunk_images
        self._free.update(range(first, first + self.chunk_images))

    def _forget(self, row: int) -> None:
        key = self._key_of_row.pop(row, None)
        if key is not None:
            del self._rows[key]

    def _give_back(self, index: int) -> int:
        """Give back an unpinned chunk, forgetting what it holds; returns its bytes."""
        rows = range(index * self.chunk_images, (index + 1) * self.chunk_images)
        for row in rows:
            self._forget(row)
        self._free.difference_update(rows)
        self._last_use[rows.start:rows.stop] = 0
        self._chunks[index] = None  # a spilled chunk's file goes with its mapping
        return self.chunk_bytes

    def idle_chunks(self, on_disk: bool) -> list[tuple[int, Callable[[], int]]]:
        """The chunks held in RAM (or on disk) without pinned rows, each with its last use
        and a function that gives it back (forgetting its images) and returns its bytes.

        For the budgets, which give back the least recently used chunks of all stores
        first; the caller holds the cache's lock.
        """
        pinned = (self._pins.reshape(-1, self.chunk_images) > 0).any(axis=1)
        last_use = self._last_use.reshape(-1, self.chunk_images).max(axis=1)
        return [(int(last_use[i]), functools.partial(self._give_back, i))
                for i, chunk in enumerate(self._chunks)
                if chunk is not None and isinstance(chunk, np.memmap) == on_disk and not pinned[i]]

    def _least_recently_used(self, n: int) -> np.ndarray:
        """Up to ``n`` unpinned rows holding images, the least recently used first."""
        cached = np.fromiter(self._key_of_row, dtype=np.int64, count=len(self._key_of_row))
        idle = cached[self._pins[cached] == 0]
        return idle[np.argsort(self._last_use[idle], kind="stable")[:n]]

    def _take_rows(self, n: int) -> np.ndarray:
        """``n`` rows to decode into: free rows first, then a new chunk while the budgets have
        room for one (RAM, then disk), then the least recently used unpinned rows, then new
        spilled chunks beyond the budgets (a working set larger than them)."""
        taken: list[int] = []
        settings = get_config()
        try:
            while len(taken) < n:
                if self._free:
                    rows = sorted(self._free)[:n - len(taken)]
                    self._free.difference_update(rows)
                    taken.extend(rows)
                elif _held(False) + self.chunk_bytes <= settings["cache_memory_bytes"]:
                    self._new_chunk(on_disk=False)
                elif _held(True) + self.chunk_bytes <= settings["cache_disk_bytes"]:
                    self._new_chunk(on_disk=True)
                elif len(victims := self._least_recently_used(n - len(taken))):
                    for row in victims.tolist():
                        self._forget(row)
                    taken.extend(victims.tolist())
                else:
                    self._new_chunk(on_disk=True)
        except BaseException:  # no room could be made (say, the cache folder is not writable)
            self._free.update(taken)
            raise
        return np.array(taken, dtype=np.int64)

    def _unpin(self, rows: np.ndarray) -> None:
        self._pins[rows] -= 1
        self._last_use[rows] = next(_CLOCK)

    def _release(self, rows: np.ndarray, blocking: bool = True) -> None:
        """Unpin ``rows`` and give back what is over the budgets. The garbage collector calls
        it with ``blocking=False``: it may run while this thread holds the lock, so then the
        release waits in a queue."""
        if not _LOCK.acquire(blocking=blocking):
            _RELEASE_LATER.append(functools.partial(self._unpin, rows))
            return
        try:
            self._unpin(rows)
            _settle()
        finally:
            _LOCK.release()

    # ------------------------------------------------------------------------ public
    def add(
        self,
        inputs: Sequence[ImageInput],
        *,
        num_workers: int = 1,
        verbose: int = 0,
        pin: bool = False,
        device: torch.device | None = None,
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
        pin : bool, default=False
            Keep the rows pinned (never evicted or reused) until the result is released
            (:meth:`DecodeResult.release`, or ``with store.add(..., pin=True) as result:``).
            The rows are pinned in the same step that finds or allocates them. Without it
            the rows stay valid only until the store next needs room beyond its budgets.
        device : torch.device, optional
            Decode baseline JPEG files on this device, in batches (nvJPEG on CUDA; see
            :mod:`wjsentiment.images.device`); every other input, and any file the device
            refuses, is decoded on the host. None: everything on the host.

        Returns
        -------
        DecodeResult
            The row of each input (-1 for a bad one) and the errors of the bad ones; with
            ``pin``, the rows stay pinned until it is released.

        Raises
        ------
        OSError or MemoryError
            When the system failed to read an input (too many open files, an I/O error, out
            of memory). The input is not recorded as bad, the images decoded meanwhile are
            kept, and the next call tries it again. A file this account may not read is not
            such an error: it is a bad input like a truncated one, in ``errors``.
        """
        keys = [input_key(item) for item in inputs]
        failed: dict[tuple, BaseException] = {}  # the inputs known to be bad, then new failures
        todo: dict[tuple, int] = {}  # key -> first position
        with _LOCK:
            _settle()
            rows = np.array([self._rows.get(key, -1) for key in keys], dtype=np.int64)
            missing = np.flatnonzero(rows < 0).tolist()
            for pos in missing:
                key = keys[pos]
                if key in self._bad:
                    failed[key] = self._bad[key]
                elif key not in todo:
                    todo[key] = pos
            found = np.unique(rows[rows >= 0])
            self._pins[found] += 1  # before taking rows, which may evict unpinned ones
            try:
                new = self._take_rows(len(todo))
            except BaseException:
                self._unpin(found)
                raise
            self._pins[new] += 1
        row_of = dict(zip(todo, new.tolist()))
        try:
            outcomes = self._decode(inputs, todo, row_of, num_workers, verbose, device)
        except BaseException as exc:  # interrupted: nothing of this call is kept
            self._record(row_of, dict.fromkeys(row_of, exc))
            self._release(found)
            raise
        failed.update((key, exc) for key, exc in outcomes.items() if exc is not None)
        self._record(row_of, failed)
        kept = np.array(found.tolist() + [r for k, r in row_of.items() if k not in failed],
                        dtype=np.int64)
        system = [exc for exc in failed.values() if not isinstance(exc, BadImageError)]
        if system or not pin:
            self._release(kept)
        if system:
            raise system[0]
        errors = [(pos, failed[keys[pos]]) for pos in missing if keys[pos] in failed]
        for pos in missing:
            if keys[pos] not in failed:  # then in row_of: decoded now, or by another call
                rows[pos] = row_of[keys[pos]]
        unpin = functools.partial(self._release, kept) if pin else None
        return DecodeResult(rows=rows, errors=errors, unpin=unpin)

    def _record(self, row_of: dict[tuple, int], failed: dict[tuple, BaseException]) -> None:
        """Record what one call decoded: each input of ``row_of`` that did not fail keeps its
        (pinned) row, unless another call decoded it meanwhile, whose row it then shares; the
        row of any other is unpinned and freed, and a bad input is remembered as bad."""
        with _LOCK:
            for key, row in row_of.items():
                if key not in failed and key not in self._rows:
                    self._rows[key], self._key_of_row[row] = row, key
                    continue
                self._pins[row] -= 1
                self._free.add(row)
                if key in failed:
                    if isinstance(failed[key], BadImageError):
                        self._bad[key] = _without_frames(failed[key])
                else:  # another call decoded it meanwhile: share its row
                    row_of[key] = self._rows[key]
                    self._pins[row_of[key]] += 1

    def _put(self, key: tuple, row_of: dict[tuple, int], pixels: np.ndarray) -> None:
        row = row_of[key]
        self._chunks[row // self.chunk_images][row % self.chunk_images] = pixels

    def _decode(self, inputs: Sequence[ImageInput], todo: dict[tuple, int],
                row_of: dict[tuple, int], num_workers: int, verbose: int,
                device: torch.device | None = None) -> dict[tuple, Exception | None]:
        """Decode each input of ``todo`` into its row: None, or the error it raised. With a
        ``device``, baseline JPEG files are decoded there first and the rest on the host."""

        def work(key: tuple) -> Exception | None:
            try:
                pixels = decode_image(inputs[todo[key]], self.size, self.grayscale)
            except Exception as exc:  # noqa: BLE001 - BadImageError, or a system error to raise
                return exc
            self._put(key, row_of, pixels)
            return None

        outcomes: dict[tuple, Exception | None] = {}
        if not todo:
            return outcomes
        with progress(len(todo), f"decode {self.size}px", "img", verbose) as bar, \
                ThreadPoolExecutor(max_workers=max(1, int(num_workers))) as pool:
            host = list(todo)
            if device is not None:
                files = [key for key in todo if isinstance(inputs[todo[key]], (str, os.PathLike))]
                for pos, pixels in decode_files_on_device(
                        [inputs[todo[key]] for key in files], self.size, self.grayscale, device,
                        pool):
                    if pixels is not None:
                        self._put(files[pos], row_of, pixels)
                        outcomes[files[pos]] = None
                        bar.update(1)
                host = [key for key in todo if key not in outcomes]
            for key, outcome in zip(host, pool.map(work, host)):
                outcomes[key] = outcome
                bar.update(1)
        return outcomes

    def clear(self) -> None:
        """Forget every image that no call holds pinned, and the inputs known to be bad."""
        with _LOCK:
            _settle()
            for _, give_back in self.idle_chunks(False) + self.idle_chunks(True):
                give_back()
            self._bad.clear()

    def input_keys(self, rows: np.ndarray) -> list[tuple]:
        """The :func:`~wjsentiment.images.decode.input_key` each row was decoded from.

        Examples
        --------
        >>> store = DecodedImageStore(4, grayscale=False)
        >>> rows = store.add([np.zeros((4, 4, 3), dtype=np.uint8)]).rows
        >>> store.input_keys(rows)[0][0]
        'array'
        """
        with _LOCK:
            return [self._key_of_row[int(r)] for r in rows]

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Copy the given rows into one ``(len(rows), size, size, 3)`` uint8 array.

        Each image is copied once, straight into ``out`` (a pinned staging buffer, say):
        no temporary array. numpy releases the GIL while copying, so threads can gather
        the parts of one batch at the same time. No lock is taken: the caller holds the
        rows pinned (or knows the store is not being added to).

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
            raise InputError(f"out holds {out.shape[0]} images, rows name {len(rows)}.")
        chunks, offsets = np.divmod(rows, self.chunk_images)
        # The rows of each run of one chunk (a prediction's rows are mostly in order) are
        # copied by one numpy call, outside the GIL, instead of one Python step per image,
        # which would hold the GIL against the threads computing. ("clip" never clips here:
        # it only spares ``take`` the temporary array it would fill first with "raise".)
        starts = np.flatnonzero(np.diff(chunks, prepend=-1)).tolist()
        for a, b in zip(starts, [*starts[1:], len(rows)]):
            np.take(self._chunks[chunks[a]], offsets[a:b], axis=0, out=out[a:b], mode="clip")
        return out


def get_store(size: int, grayscale: bool = False) -> DecodedImageStore:
    """The process-wide decoded-image store for one image size and colour mode.

    Examples
    --------
    >>> get_store(32) is get_store(32)
    True
    """
    key = (int(size), bool(grayscale))
    with _LOCK:
        if key in _STORES:
            return _STORES[key]
    store = DecodedImageStore(*key)  # (outside the lock, which making a store takes)
    with _LOCK:
        return _STORES.setdefault(key, store)


def clear_image_cache() -> None:
    """Forget every decoded image (RAM and spilled chunks alike).

    Images that a running ``fit`` or ``predict`` holds pinned stay until it ends.

    Examples
    --------
    >>> clear_image_cache()
    """
    with _LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.clear()
