"""The glue to run wjsentiment on a Dask cluster: prediction over a ``dask.dataframe`` of
paths, a per-process model cache, and a worker plugin for the settings.

:func:`predict_partitions` applies :func:`~wjsentiment.scale.predict_frame` to every
partition of a ``dask.dataframe`` of paths, with the model loaded once per worker process
(:func:`load_model`). :func:`worker_setup` is a Dask worker plugin that gives every worker,
including those that join or restart later, the settings a search or a prediction wants (a
shared feature-cache folder, torch threads, a decoded-image budget).

This module needs Dask (``pip install "wjsentiment[dask]"``); ``wjsentiment.scale`` imports
it only when one of these names is asked for.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

from ..config import set_config
from ..exceptions import InputError
from .stream import PATH_COLUMN, predict_frame, quiet

if TYPE_CHECKING:
    import dask.dataframe
    import pandas

__all__ = ["WorkerSetup", "load_model", "predict_partitions", "worker_setup"]

#: How many loaded models a process keeps (a new save of a folder is a new entry; the least
#: recently used one goes first).
MODELS_KEPT = 4

_LOADING = threading.Lock()


@functools.lru_cache(maxsize=MODELS_KEPT)
def _loaded(real: str, inode: int, mtime_ns: int, device: str | None) -> Any:
    from .. import load

    return quiet(load(real, device=device))


def load_model(path: str | os.PathLike, device: str | None = None) -> Any:
    """The model saved at ``path``, loaded once per process and quiet (no progress bars).

    Later calls with the same folder return the same object until the folder is replaced or
    changed (a new save renames a new folder into place): the cache is keyed by the real
    path, the folder's inode and its modification time, and keeps the :data:`MODELS_KEPT`
    models used last. Safe to call from several threads (a model is loaded once).

    Parameters
    ----------
    path : path-like
        A folder written by ``SentimentClassifier.save`` or ``SentimentEnsemble.save``.
    device : str, optional
        Override the saved device (see :func:`wjsentiment.load`).

    Examples
    --------
    >>> load_model("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...
    """
    real = os.path.realpath(path)
    info = os.stat(real)
    with _LOADING:
        return _loaded(real, info.st_ino, info.st_mtime_ns, device)


def _predict_partition(part: pandas.DataFrame, model_path: str, path_col: str,
                       batch_size: int, device: str | None) -> pandas.DataFrame:
    """The prediction table of one partition, ``batch_size`` images at a time."""
    import pandas as pd

    model = load_model(model_path, device)
    paths = part[path_col].astype(str).tolist()
    chunks = [predict_frame(model, paths[start:start + batch_size])
              for start in range(0, len(paths), batch_size)]
    table = pd.concat(chunks, ignore_index=True) if chunks else predict_frame(model, [])
    table.index = part.index
    return table


def predict_partitions(paths: dask.dataframe.DataFrame | dask.dataframe.Series,
                       model: str | os.PathLike, *, path_col: str = PATH_COLUMN,
                       batch_size: int = 256, device: str | None = None
                       ) -> dask.dataframe.DataFrame:
    """Predict every image of a ``dask.dataframe`` of paths on the cluster, lazily.

    Each partition is predicted by the worker that holds it, ``batch_size`` images at a
    time, with the model read from ``model`` once per worker process (:func:`load_model`):
    only the folder's path travels to the workers, so it must be readable there (a shared
    or copied folder), as must the images.

    Parameters
    ----------
    paths : dask.dataframe.DataFrame or dask.dataframe.Series
        Image paths: a Series, or a DataFrame whose column ``path_col`` holds them.
    model : path-like
        Folder of a saved ``SentimentClassifier`` or ``SentimentEnsemble``.
    path_col : str, default="path"
        The column of ``paths`` that holds the paths (for a DataFrame).
    batch_size : int, default=256
        Images decoded and predicted together; bounds a worker's memory per partition.
    device : str, optional
        Override the saved device on the workers (e.g. "cpu", "cuda").

    Returns
    -------
    dask.dataframe.DataFrame
        The rows of :func:`~wjsentiment.scale.predict_frame` (the columns of
        :func:`~wjsentiment.scale.prediction_columns`), with the index of ``paths``. Call
        ``.compute()``, or write it with ``.to_csv`` or ``.to_parquet``.

    Examples
    --------
    >>> import dask.dataframe as dd, pandas as pd
    >>> frame = dd.from_pandas(pd.DataFrame({"path": ["a.jpg", "b.jpg"]}), npartitions=2)
    >>> predict_partitions(frame, "no/such/model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...
    """
    import dask.dataframe as dd

    if isinstance(paths, dd.Series):
        paths = paths.to_frame(name=path_col)
    elif not isinstance(paths, dd.DataFrame):
        raise TypeError(f"paths must be a dask DataFrame or Series of image paths, got "
                        f"{type(paths).__name__}; make one with dask.dataframe.from_pandas "
                        "or dask.dataframe.read_csv.")
    if path_col not in paths.columns:
        raise InputError(f"path_col={path_col!r} is not a column of paths (columns: "
                         f"{', '.join(map(str, paths.columns))}).")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size!r}.")
    model_path = os.path.realpath(model)
    # The columns and dtypes, from the model loaded on the client's CPU: the workers' device
    # (a GPU, say) need not exist here.
    meta = predict_frame(load_model(model_path, "cpu"), [])
    return paths.map_partitions(_predict_partition, model_path, path_col, int(batch_size),
                                device, meta=meta)


class WorkerSetup(WorkerPlugin):
    """Settings applied by every Dask worker when it starts (made by :func:`worker_setup`).

    Attributes
    ----------
    feature_cache_dir : str or None
        The feature-cache folder each worker sets (None: left alone).
    torch_threads : int or None
        torch's threads in each worker (None: left alone).
    cache_memory : int, "auto" or None
        Each worker's decoded-image budget in bytes; "auto": a quarter of its Dask memory
        limit (None: left alone).
    """

    def __init__(self, feature_cache_dir: str | None, torch_threads: int | None,
                 cache_memory: int | str | None) -> None:
        self.feature_cache_dir = feature_cache_dir
        self.torch_threads = torch_threads
        self.cache_memory = cache_memory

    def setup(self, worker: Any) -> None:
        """Apply the settings in the worker's process (Dask calls it)."""
        if self.torch_threads is not None:
            import torch

            torch.set_num_threads(self.torch_threads)
        budget = self.cache_memory
        if budget == "auto":
            limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
            budget = limit // 4 if limit else None
        settings = {"feature_cache_dir": self.feature_cache_dir,
                    "cache_memory_bytes": None if budget is None else int(budget)}
        set_config(**{name: value for name, value in settings.items() if value is not None})


def worker_setup(*, feature_cache_dir: str | os.PathLike | None = None,
                 torch_threads: int | None = None,
                 cache_memory: int | str | None = None) -> WorkerSetup:
    """A Dask worker plugin that applies wjsentiment settings on every worker.

    Register it once with ``client.register_plugin(worker_setup(...))``: the workers running
    now apply it, and so do workers that join or are restarted later (after a lost worker,
    say), which ``client.run(set_config, ...)`` would miss.

    Parameters
    ----------
    feature_cache_dir : path-like, optional
        A folder every worker can reach (shared disk) for the frozen-backbone features
        (``feature_cache_dir`` of :func:`wjsentiment.set_config`): the workers of one
        machine then compute each image's features once between them. An image file is
        known by its device number too, which each machine's mount gives, so workers on
        different machines may each compute their own (right, but not shared).
        ``WJSENTIMENT_FEATURE_CACHE_DIR`` in the workers' environment does the same.
    torch_threads : int, optional
        ``torch.set_num_threads`` on each worker; give each worker process its share of the
        machine's cores (e.g. 1 per worker with one thread each).
    cache_memory : int or "auto", optional
        RAM budget in bytes for each worker's decoded-image cache (``cache_memory_bytes``
        of :func:`wjsentiment.set_config`); ``"auto"``: a quarter of the worker's Dask memory
        limit. Left alone by default (a quarter of the machine's memory, at most 16 GiB, per
        process).

    Returns
    -------
    WorkerSetup
        A ``distributed.WorkerPlugin``.

    Examples
    --------
    >>> plugin = worker_setup(torch_threads=1, cache_memory="auto")
    >>> type(plugin).__name__, plugin.torch_threads
    ('WorkerSetup', 1)
    """
    if torch_threads is not None and int(torch_threads) < 1:
        raise InputError(f"torch_threads must be >= 1, got {torch_threads!r}.")
    if isinstance(cache_memory, str) and cache_memory != "auto":
        raise InputError(f"cache_memory must be a number of bytes or 'auto', got "
                         f"{cache_memory!r}.")
    folder = os.fspath(feature_cache_dir) if feature_cache_dir is not None else None
    threads = int(torch_threads) if torch_threads is not None else None
    return WorkerSetup(folder, threads, cache_memory)
