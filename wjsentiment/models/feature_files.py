"""Frozen-backbone features on disk, so that another process (a new notebook session, a CLI
run, a joblib worker) finds them already computed.

Off unless a folder is set with ``wjsentiment.set_config(feature_cache_dir=...)`` or the
``WJSENTIMENT_FEATURE_CACHE_DIR`` variable. One sub-folder per (backbone, weights, precision,
image size, colour mode, torch and timm versions) holds shards: ``.npz`` files of image digests
and float32 feature vectors, each written under a temporary name and renamed, so a reader
never sees half a shard and two processes can add shards side by side. A process that has
features to compute holds the table's lock file (:meth:`FeatureFiles.lock`) from its last
look at the shards until its own shard is written, so the processes of one machine that share
the folder (Dask workers on one host, say) compute each image's features once between them.
An image's digest comes from its :func:`~wjsentiment.images.decode.input_key`: a file is
identified by its device, inode, size and modification time, so a rewritten file is computed
again. The device number is the one this machine's mount gives, so a process on another
machine, whose mount may number the device differently, does not find these features: it
computes and stores its own (right, but not shared).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import timm
import torch
from filelock import FileLock

from ..config import get_config
from ..exceptions import FeatureCacheWarning, warn
from ..persistence import atomic_file

_DIGEST_BYTES = 16

#: The file in a table's folder that :meth:`FeatureFiles.lock` locks.
LOCK_FILE = ".lock"

#: The table folders that could not be locked (warned about once each).
_UNLOCKED: set[Path] = set()


def feature_cache_dir() -> Path | None:
    """The folder features are kept in (the ``feature_cache_dir`` setting), or None.

    Set it with ``wjsentiment.set_config(feature_cache_dir=...)`` or the
    ``WJSENTIMENT_FEATURE_CACHE_DIR`` variable.

    Examples
    --------
    >>> import tempfile, wjsentiment
    >>> with wjsentiment.config_context(feature_cache_dir=tempfile.mkdtemp()):
    ...     feature_cache_dir() is not None
    True
    """
    folder = get_config()["feature_cache_dir"]
    return None if folder is None else Path(folder)


def image_digest(key: tuple) -> bytes | None:
    """A fixed-size digest of an input key that is the same in every process, or None for
    inputs known only by object identity.

    Examples
    --------
    >>> len(image_digest(("file", 1, 2, 3, 4)))
    16
    >>> image_digest(("object", 123)) is None
    True
    """
    if key[0] == "object":
        return None
    return hashlib.blake2b(repr(key).encode(), digest_size=_DIGEST_BYTES).digest()


class FeatureFiles:
    """The shards of one feature table in the cache folder.

    Parameters
    ----------
    root : Path
        The cache folder.
    table_key : tuple
        What the features depend on besides the image (backbone, weights, precision, size).
    """

    def __init__(self, root: Path, table_key: tuple) -> None:
        full = (table_key, torch.__version__, timm.__version__)
        self.folder = Path(root) / hashlib.blake2b(repr(full).encode(), digest_size=10).hexdigest()
        self.description = repr(full)

    def read(self, digests: list[bytes | None]) -> tuple[np.ndarray, np.ndarray | None]:
        """Which digests have stored features, and those features (in the order asked).

        Returns
        -------
        found : numpy.ndarray of bool
            Whether each digest has stored features.
        values : numpy.ndarray of shape (len(digests), n_features), or None if none found
            Float32 features, zeros where not found.
        """
        wanted = {d: i for i, d in enumerate(digests) if d is not None}
        found = np.zeros(len(digests), dtype=bool)
        stored = None
        for shard in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []:
            try:
                with np.load(shard) as data:
                    names, values = data["digests"], data["features"]
            except Exception as exc:  # noqa: BLE001 - a damaged shard is skipped, not fatal
                warn(f"Ignoring the unreadable feature cache file {shard} "
                     f"({type(exc).__name__}: {exc}); delete it to silence this.",
                     FeatureCacheWarning)
                continue
            for j, name in enumerate(names):
                i = wanted.get(name.tobytes())
                if i is not None and not found[i]:
                    if stored is None:
                        stored = np.zeros((len(digests), values.shape[1]), dtype=np.float32)
                    found[i] = True
                    stored[i] = values[j]
        return found, stored

    def lock(self) -> FileLock:
        """The table's lock, to hold while looking for missing features, computing and writing
        them (``with files.lock(): ...``).

        Another process that wants features of this table waits, then finds them in the
        shard this one wrote. A :class:`filelock.FileLock` on :data:`LOCK_FILE`: the operating
        system releases it when its holder exits, even when killed, so a lost worker never
        blocks the others.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(self.folder / LOCK_FILE)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold :meth:`lock` for the block, where the filesystem can lock.

        A lock that cannot be taken for another reason than contention (no locks on an NFS
        mount: ``ENOLCK``) is warned about, once per folder, and the block runs without it:
        the features stay right, though two processes may then compute the same ones.
        """
        lock = self.lock()
        try:
            lock.acquire()
        except (OSError, NotImplementedError) as exc:  # filelock: NotImplementedError, ENOSYS
            if self.folder not in _UNLOCKED:
                _UNLOCKED.add(self.folder)
                warn(f"Cannot lock the feature cache folder {self.folder} ({exc}); features "
                     "are computed without the lock, so processes sharing the folder may "
                     "compute the same ones.", FeatureCacheWarning)
            lock = None
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    def write(self, digests: list[bytes | None], values: np.ndarray) -> None:
        """Add a shard with the features of the digests that are not None."""
        keep = [i for i, d in enumerate(digests) if d is not None]
        if not keep:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        about = self.folder / "table.txt"
        if not about.exists():
            with atomic_file(about, encoding="utf-8") as fh:
                fh.write(self.description + "\n")
        names = np.frombuffer(b"".join(digests[i] for i in keep), dtype=np.uint8)
        with atomic_file(self.folder / f"{uuid.uuid4().hex}.npz", mode="wb") as fh:
            np.savez(fh, digests=names.reshape(len(keep), _DIGEST_BYTES),
                     features=np.asarray(values[keep], dtype=np.float32))


def clear_feature_files() -> None:
    """Delete every table in the cache folder (the folder itself stays)."""
    root = feature_cache_dir()
    if root is None or not root.is_dir():
        return
    for table in root.iterdir():
        if table.is_dir() and (table / "table.txt").exists():
            shutil.rmtree(table, ignore_errors=True)
