"""Prediction over many images, and the glue to run wjsentiment on a Dask cluster.

:func:`predict_frame` predicts a list of paths into a table with one row per path, where an
unreadable image gets a row that says why instead of stopping the others. :func:`predict_csv`
streams such tables into a CSV file chunk by chunk (what ``wjsentiment predict`` runs), with
bounded memory and a resume that skips the paths already written; :func:`predict_partitions`
applies :func:`predict_frame` to every partition of a ``dask.dataframe`` of paths, with the
model loaded once per worker process (:func:`load_model`). :func:`worker_setup` is a Dask
worker plugin that gives every worker, including those that join or restart later, the
settings a search or a prediction wants (a shared feature-cache folder, torch threads, a
decoded-image budget).

Dask is imported only by the functions that need it (``pip install "wjsentiment[dask]"``).
See the guide page "Scaling out".
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas and dask are imported by the functions that use them
    import dask.dataframe
    import pandas

__all__ = ["PredictionSummary", "load_model", "predict_csv", "predict_frame",
           "predict_partitions", "prediction_columns", "quiet", "worker_setup"]

#: The column of a prediction table that names the image.
PATH_COLUMN = "path"

#: How :func:`predict_csv` writes probabilities.
PROBABILITY_FORMAT = "%.6f"

#: Encoding of the CSV files :func:`predict_csv` writes and resumes. ``surrogateescape`` keeps
#: a file name that is not valid UTF-8 byte for byte, so a resumed run recognises it.
_CSV_TEXT = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}

_MODELS: dict[str, tuple[tuple, Any]] = {}
_MODELS_LOCK = threading.Lock()


def prediction_columns(classes: Sequence[Any]) -> list[str]:
    """The columns of a prediction table for a model with these ``classes_``.

    ``path``, ``label``, one ``proba_<class>`` per class (in the order of ``classes``), and
    ``error``: empty when the image was read, else why it could not be.

    Examples
    --------
    >>> prediction_columns(["Negative", "Positive"])
    ['path', 'label', 'proba_Negative', 'proba_Positive', 'error']
    """
    return [PATH_COLUMN, "label", *[f"proba_{c}" for c in classes], "error"]


def quiet(model: Any) -> Any:
    """Turn off the progress bars of a loaded model (and of an ensemble's members).

    Returns the model, so that ``quiet(load(path))`` reads naturally.
    """
    if "verbose" in model.get_params(deep=False):
        model.set_params(verbose=0)
    for member in getattr(model, "estimators_", []):
        quiet(member)
    return model


def _decode_for(model: Any, paths: list[str], held: contextlib.ExitStack) -> dict[int, str]:
    """Decode ``paths`` once for every member of ``model``, as its ``predict_proba`` would
    (same store, same decoder and device), pinned until ``held`` closes; return why each
    unreadable one is unreadable, by position.

    ``predict_proba`` then finds the images decoded: none is decoded twice, and a CUDA model
    decodes on its GPU.
    """
    reasons: dict[int, str] = {}
    for member in model.members_ if paths else []:
        decoded = held.enter_context(member.classifier.decode(paths))
        for pos, error in decoded.errors:
            reasons.setdefault(pos, error.reason)
    return reasons


def predict_frame(model: Any, paths: Sequence[str | os.PathLike]) -> pandas.DataFrame:
    """Predict ``paths`` with a fitted model: one row per path, in order, unreadable ones too.

    Parameters
    ----------
    model : SentimentClassifier or SentimentEnsemble
        A fitted (or loaded) model.
    paths : sequence of path-like
        Image files. They are decoded together, so pass a chunk of a long list at a time.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`prediction_columns`. ``label`` is the class ``predict`` gives
        (as text) and the ``proba_`` columns are ``predict_proba``; for an image that could
        not be read (missing, truncated, not an image) ``label`` is empty, the probabilities
        are NaN and ``error`` says why. Text columns have dtype ``object``.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from PIL import Image
    >>> from wjsentiment import SentimentClassifier
    >>> X = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    >>> X[1::2] = 230  # dark and bright images
    >>> clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=16, epochs=1,
    ...                           calibration=None, random_state=0, verbose=0)
    >>> clf = clf.fit(X, ["Negative", "Positive"] * 2)
    >>> dark = tempfile.mkdtemp() + "/dark.png"
    >>> Image.fromarray(X[0]).save(dark)
    >>> table = predict_frame(clf, [dark, "no/such/image.png"])
    >>> table.columns.tolist()
    ['path', 'label', 'proba_Negative', 'proba_Positive', 'error']
    >>> table["error"].tolist()
    ['', 'no such file']
    """
    import pandas as pd

    from .evaluation import predictions_from_proba

    paths = [os.fspath(p) for p in paths]
    classes = list(model.classes_)
    with contextlib.ExitStack() as held:
        reasons = _decode_for(model, paths, held)
        good = [path for i, path in enumerate(paths) if i not in reasons]
        proba = model.predict_proba(good) if good else np.zeros((0, len(classes)))
    labels = predictions_from_proba(model, proba)
    read = np.array([i not in reasons for i in range(len(paths))], dtype=bool)
    table_proba = np.full((len(paths), len(classes)), np.nan)
    table_proba[read] = proba
    table_labels = np.full(len(paths), "", dtype=object)
    table_labels[read] = [str(label) for label in labels]
    columns = prediction_columns(classes)
    table = pd.DataFrame({
        columns[0]: pd.Series(paths, dtype=object),
        columns[1]: pd.Series(table_labels, dtype=object),
        **{name: table_proba[:, k] for k, name in enumerate(columns[2:-1])},
        columns[-1]: pd.Series([reasons.get(i, "") for i in range(len(paths))], dtype=object),
    })
    return table


@dataclass(frozen=True)
class PredictionSummary:
    """What one :func:`predict_csv` call did.

    Attributes
    ----------
    n_predicted : int
        Inputs this call predicted, readable or not (a row each).
    n_failed : int
        Of those, the images that could not be read (their rows carry the error).
    n_skipped : int
        Inputs left out because their path was already in the file (``resume=True``).
    first_failure : tuple of (str, str) or None
        The path and reason of the first unreadable image.
    written : bool
        False when no image could be read (here, or in the rows already in a resumed
        file): then the output was left as it was.
    """

    n_predicted: int
    n_failed: int
    n_skipped: int
    first_failure: tuple[str, str] | None
    written: bool


def _path_digest(path: str) -> bytes:
    """16 bytes that stand for ``path`` in the set of paths already written."""
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=16).digest()


class _WrittenRows:
    """The rows a predictions file already holds, for a resumed :func:`predict_csv`.

    Keeps a sorted array of 16-byte digests of their paths (16 bytes a row, not the paths).
    """

    def __init__(self, digests: bytes, n_rows: int, n_readable: int, has_header: bool) -> None:
        self.digests = np.sort(np.frombuffer(digests, dtype="S16"))
        self.n_rows, self.n_readable, self.has_header = n_rows, n_readable, has_header

    @classmethod
    def read(cls, path: str | os.PathLike, columns: list[str]) -> _WrittenRows:
        """Read ``path`` (a missing file holds nothing) and cut off a partial last row.

        A run killed while writing can leave its last row cut short: the file is truncated
        after the last complete row, which this run then writes again. Anything else that is
        not a row of ``columns`` is an error naming the line.
        """
        if not os.path.exists(path):
            return cls(b"", 0, 0, False)
        digests, n_rows, n_readable, has_header = bytearray(), 0, 0, False
        with open(path, "r+b") as handle:
            size = os.fstat(handle.fileno()).st_size
            end = 0  # just after the last complete row
            for record, offset in _complete_records(handle, size, path):
                if not has_header:
                    if record != columns:
                        raise ValueError(
                            f"{path} does not start with the columns this model writes "
                            f"({','.join(columns)}): it holds another model's predictions or "
                            "is not a predictions file. Resume into the file the interrupted "
                            "run wrote, or start a new one.")
                    has_header = True
                elif len(record) != len(columns):
                    raise ValueError(f"{path}: row {n_rows + 1} has {len(record)} fields, not "
                                     f"{len(columns)}; the file was edited or damaged. Fix or "
                                     "remove that row to resume.")
                else:
                    digests += _path_digest(record[0])
                    n_rows += 1
                    n_readable += record[-1] == ""
                end = offset
            if end < size:
                handle.truncate(end)
                os.fsync(handle.fileno())
        return cls(bytes(digests), n_rows, n_readable, has_header)

    def without(self, paths: list[str]) -> list[str]:
        """``paths`` less those already written."""
        if not len(self.digests) or not paths:
            return paths
        wanted = np.array([_path_digest(p) for p in paths], dtype="S16")
        at = np.minimum(np.searchsorted(self.digests, wanted), len(self.digests) - 1)
        seen = self.digests[at] == wanted
        return [p for p, s in zip(paths, seen) if not s]


def _complete_records(handle: IO[bytes], size: int,
                      path: str | os.PathLike) -> Iterator[tuple[list[str], int]]:
    """The CSV records of ``handle``, each with the byte offset just after it; stops before a
    last record that the end of the file cuts short (no final newline, or an open quote)."""
    state = {"offset": 0, "ended": True}

    def lines() -> Iterator[str]:
        for raw in handle:
            state["offset"] += len(raw)
            state["ended"] = raw.endswith(b"\n")
            yield raw.decode(_CSV_TEXT["encoding"], _CSV_TEXT["errors"])

    reader = csv.reader(lines(), strict=True)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if state["offset"] >= size:  # an open quote at the end: a row cut short
                return
            raise ValueError(f"{path} is not a valid CSV file near line {reader.line_num} "
                             f"({exc}); fix it or start a new file.") from None
        if not state["ended"]:
            return
        yield record, state["offset"]


class _RowSink:
    """Where :func:`predict_csv` writes: rows go out a chunk at a time, flushed and synced.

    Until a readable image has been predicted (or when the resumed file already holds one),
    rows wait in a temporary file, so a run that reads nothing leaves the output untouched.
    """

    def __init__(self, out: str | os.PathLike | IO[str], columns: list[str], *, append: bool,
                 started: bool) -> None:
        self._out, self._columns, self._append = out, columns, append
        self._handle: IO[str] | None = None
        self._pending: IO[str] | None = None
        if started:
            self._open()

    @property
    def started(self) -> bool:
        return self._handle is not None

    def _owns_file(self) -> bool:
        return isinstance(self._out, (str, os.PathLike))

    def _open(self) -> None:
        if self._owns_file():
            Path(self._out).parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self._out, "a" if self._append else "w", **_CSV_TEXT)
        else:
            self._handle = self._out
        if not self._append:
            csv.writer(self._handle, lineterminator="\n").writerow(self._columns)
        if self._pending is not None:
            self._pending.seek(0)
            shutil.copyfileobj(self._pending, self._handle)
            self._pending.close()
            self._pending = None

    def write(self, table: pandas.DataFrame, *, readable: bool) -> None:
        if self._handle is None and readable:
            self._open()
        if self._handle is None:
            if self._pending is None:
                self._pending = tempfile.TemporaryFile("w+", **_CSV_TEXT)
            target = self._pending
        else:
            target = self._handle
        table.to_csv(target, header=False, index=False, float_format=PROBABILITY_FORMAT,
                     lineterminator="\n")
        if target is self._handle:
            self._handle.flush()
            if self._owns_file():
                os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._pending is not None:
            self._pending.close()
        if self._handle is not None and self._owns_file():
            self._handle.close()


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, n)):
        yield chunk


def predict_csv(model: Any, paths: Iterable[str | os.PathLike],
                out: str | os.PathLike | IO[str], *, batch_size: int = 256,
                resume: bool = False,
                on_chunk: Callable[[int], None] | None = None) -> PredictionSummary:
    """Predict images into a CSV file, ``batch_size`` at a time, in bounded memory.

    ``paths`` is read lazily (a generator over millions of paths is fine) and each chunk's
    rows (:func:`predict_frame`) are appended to ``out``, flushed and synced before the next
    chunk starts, so an interrupted run loses at most the chunk in flight. With
    ``resume=True`` the inputs whose path is already in ``out`` are skipped and the rest is
    appended: run the same command again after an interruption and the file ends as an
    uninterrupted run would have written it (a path listed twice in the inputs is then
    predicted once). Memory does not grow with the number of images: only the current
    chunk's images, and for a resume 16 bytes per row already written, are held.

    Parameters
    ----------
    model : SentimentClassifier or SentimentEnsemble
        A fitted (or loaded) model.
    paths : iterable of path-like
        The images, in the order their rows are written.
    out : path-like or text stream
        The CSV file (its folder is created), or an open text stream such as
        ``sys.stdout``. Without ``resume`` an existing file is replaced, once the first
        readable image has been predicted.
    batch_size : int, default=256
        Images decoded, predicted and written per chunk.
    resume : bool, default=False
        Keep the rows already in the file ``out`` and skip their paths. A last row cut short
        by a killed run is removed (and predicted again).
    on_chunk : callable, optional
        Called with the number of inputs of each chunk once it is done (e.g. a progress bar's
        ``update``).

    Returns
    -------
    PredictionSummary
        Counts, and whether anything was written: when no image can be read at all, nothing
        is (an existing file keeps its content).

    Raises
    ------
    ValueError
        With ``resume=True``, if ``out`` is a stream, or a file that is not a predictions
        file of this model (other columns, a damaged row).

    Examples
    --------
    >>> import io, tempfile
    >>> from PIL import Image
    >>> from wjsentiment import SentimentClassifier
    >>> folder = tempfile.mkdtemp()
    >>> paths = []
    >>> for i, value in enumerate([20, 230, 30, 220]):
    ...     paths.append(f"{folder}/{i}.png")
    ...     Image.new("RGB", (16, 16), (value,) * 3).save(paths[-1])
    >>> clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=16,
    ...                           epochs=1, calibration=None, random_state=0, verbose=0)
    >>> clf = clf.fit(paths, ["Negative", "Positive"] * 2)
    >>> summary = predict_csv(clf, paths[:3], f"{folder}/out.csv", batch_size=2)
    >>> summary.n_predicted, summary.written
    (3, True)
    >>> predict_csv(clf, paths, f"{folder}/out.csv", resume=True).n_skipped
    3
    >>> sum(1 for _ in open(f"{folder}/out.csv"))  # the header and one row per image
    5
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    columns = prediction_columns(model.classes_)
    if resume and not isinstance(out, (str, os.PathLike)):
        raise ValueError("resume=True needs out to be a file path (the file to resume).")
    done = _WrittenRows.read(out, columns) if resume else None
    sink = _RowSink(out, columns, append=done is not None and done.has_header,
                    started=done is not None and done.n_readable > 0)
    n_predicted = n_failed = n_skipped = 0
    first_failure: tuple[str, str] | None = None
    try:
        for chunk in _batched(paths, int(batch_size)):
            chunk = [os.fspath(p) for p in chunk]
            todo = chunk if done is None else done.without(chunk)
            n_skipped += len(chunk) - len(todo)
            if todo:
                table = predict_frame(model, todo)
                failed = (table["error"] != "").to_numpy()
                if first_failure is None and failed.any():
                    k = int(failed.argmax())
                    first_failure = (todo[k], table["error"].iloc[k])
                n_predicted += len(todo)
                n_failed += int(failed.sum())
                sink.write(table, readable=not failed.all())
            if on_chunk is not None:
                on_chunk(len(chunk))
        return PredictionSummary(n_predicted, n_failed, n_skipped, first_failure,
                                 sink.started)
    finally:
        sink.close()


def load_model(path: str | os.PathLike, device: str | None = None) -> Any:
    """The model saved at ``path``, loaded once per process and quiet (no progress bars).

    Later calls with the same folder return the same object until the folder is replaced or
    changed (a new save renames a new folder into place): the cache is keyed by the real
    path, the folder's inode and its modification time. Safe to call from several threads.

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
    from . import load

    real = os.path.realpath(path)
    info = os.stat(real)
    stamp = (info.st_ino, info.st_mtime_ns, device)
    with _MODELS_LOCK:
        cached = _MODELS.get(real)
        if cached is None or cached[0] != stamp:
            _MODELS[real] = cached = (stamp, quiet(load(real, device=device)))
        return cached[1]


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
        The rows of :func:`predict_frame` (columns of :func:`prediction_columns`), with the
        index of ``paths``. Call ``.compute()``, or write it with ``.to_csv`` or
        ``.to_parquet``.

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
        raise ValueError(f"path_col={path_col!r} is not a column of paths (columns: "
                         f"{', '.join(map(str, paths.columns))}).")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    model_path = os.path.realpath(model)
    # The columns and dtypes, from the model loaded on the client's CPU: the workers' device
    # (a GPU, say) need not exist here.
    meta = predict_frame(load_model(model_path, "cpu"), [])
    return paths.map_partitions(_predict_partition, model_path, path_col, int(batch_size),
                                device, meta=meta)


def _plugin_class() -> type:
    """The worker plugin class behind :func:`worker_setup`, made on first use (it subclasses
    ``distributed.WorkerPlugin``, so building it imports Dask)."""
    cached = globals().get("_WORKER_SETUP")
    if cached is not None:
        return cached
    from distributed import WorkerPlugin

    class WorkerSetup(WorkerPlugin):
        """Settings applied by every worker when it starts (see :func:`worker_setup`)."""

        def __init__(self, feature_cache_dir: str | None, torch_threads: int | None,
                     cache_memory: int | str | None) -> None:
            self.feature_cache_dir = feature_cache_dir
            self.torch_threads = torch_threads
            self.cache_memory = cache_memory

        def setup(self, worker: Any) -> None:
            if self.torch_threads is not None:
                import torch

                torch.set_num_threads(self.torch_threads)
            if self.feature_cache_dir is not None:
                from .models import set_feature_cache_dir

                set_feature_cache_dir(self.feature_cache_dir)
            budget = self.cache_memory
            if budget == "auto":
                limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
                budget = limit // 4 if limit else None
            if budget is not None:
                from .config import set_config

                set_config(cache_memory_bytes=int(budget))

    WorkerSetup.__qualname__ = "WorkerSetup"  # pickled by reference: see __getattr__
    globals()["_WORKER_SETUP"] = WorkerSetup
    return WorkerSetup


def __getattr__(name: str) -> Any:
    if name == "WorkerSetup":  # how a worker finds the plugin's class when it unpickles one
        return _plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def worker_setup(*, feature_cache_dir: str | os.PathLike | None = None,
                 torch_threads: int | None = None,
                 cache_memory: int | str | None = None) -> Any:
    """A Dask worker plugin that applies wjsentiment settings on every worker.

    Register it once with ``client.register_plugin(worker_setup(...))``: the workers running
    now apply it, and so do workers that join or are restarted later (after a lost worker,
    say), which ``client.run(set_feature_cache_dir, path)`` would miss.

    Parameters
    ----------
    feature_cache_dir : path-like, optional
        A folder every worker can reach (shared disk) for the frozen-backbone features
        (:func:`~wjsentiment.models.set_feature_cache_dir`): workers then compute each
        image's features once between them. ``WJSENTIMENT_FEATURE_CACHE_DIR`` in the
        workers' environment does the same.
    torch_threads : int, optional
        ``torch.set_num_threads`` on each worker; give each worker process its share of the
        machine's cores (e.g. 1 per worker with one thread each).
    cache_memory : int or "auto", optional
        RAM budget in bytes for each worker's decoded-image cache
        (``wjsentiment.set_config(cache_memory_bytes=...)``); ``"auto"``: a quarter of the worker's
        Dask memory limit. Left alone by default (a quarter of the machine's memory, at
        most 16 GiB, per process).

    Returns
    -------
    distributed.WorkerPlugin

    Examples
    --------
    >>> plugin = worker_setup(torch_threads=1, cache_memory="auto")
    >>> type(plugin).__name__, plugin.torch_threads
    ('WorkerSetup', 1)
    """
    if torch_threads is not None and int(torch_threads) < 1:
        raise ValueError(f"torch_threads must be >= 1, got {torch_threads!r}.")
    if isinstance(cache_memory, str) and cache_memory != "auto":
        raise ValueError(f"cache_memory must be a number of bytes or 'auto', got "
                         f"{cache_memory!r}.")
    folder = os.fspath(feature_cache_dir) if feature_cache_dir is not None else None
    threads = int(torch_threads) if torch_threads is not None else None
    return _plugin_class()(folder, threads, cache_memory)
