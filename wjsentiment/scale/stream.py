"""Prediction over many images: a table with one row per image, streamed into a CSV file.

:func:`predict_frame` predicts a list of paths into a table with one row per path, where an
unreadable image gets a row that says why instead of stopping the others. :func:`predict_csv`
streams such tables into a CSV file chunk by chunk (what ``wjsentiment predict`` runs), with
bounded memory, a lock on the output file, and a resume that skips the paths already written.

Each row names the decision rule that chose its label
(:func:`~wjsentiment.inference.rule_sentence` says it in words), and the probability columns
follow the ordinal order of the sentiment labels (Highly negative .. Highly positive), as the
evaluation report and the plots do.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from ..exceptions import InputError
from ..labels import ordinal_labels
from ..persistence.files import lock_folder

if TYPE_CHECKING:  # pandas is imported by the functions that use it
    import pandas

__all__ = ["PredictionSummary", "PredictionsFileError", "output_lock", "predict_csv",
           "predict_frame", "prediction_columns", "quiet"]

#: The column of a prediction table that names the image.
PATH_COLUMN = "path"

#: How :func:`predict_csv` writes probabilities.
PROBABILITY_FORMAT = "%.6f"

#: Encoding of the CSV files :func:`predict_csv` writes and resumes. ``surrogateescape`` keeps
#: a file name that is not valid UTF-8 byte for byte, so a resumed run recognises it.
_CSV_TEXT = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}


class PredictionsFileError(InputError):
    """A predictions file that :func:`predict_csv` cannot resume: another model's, or
    damaged."""


def prediction_columns(classes: Sequence[Any]) -> list[str]:
    """The columns of a prediction table for a model with these ``classes_``.

    ``path``; ``label``; ``rule``, the decision rule that chose the label (see
    :func:`~wjsentiment.inference.rule_sentence`); one ``proba_<class>`` per class, in
    ordinal order for sentiment labels (else in the order of ``classes``); and ``error``:
    empty when the image was read, else why it could not be.

    Examples
    --------
    >>> prediction_columns(["Negative", "Highly positive", "Neutral"])
    ['path', 'label', 'rule', 'proba_Negative', 'proba_Neutral', 'proba_Highly positive', 'error']
    """
    return [PATH_COLUMN, "label", "rule", *[f"proba_{c}" for c in ordinal_labels(classes)], "error"]


def quiet(model: Any) -> Any:
    """Turn off the progress bars of a loaded model (and of an ensemble's members).

    Returns the model, so that ``quiet(load(path))`` reads naturally.
    """
    for estimator in (model, *(member.classifier for member in model.members_)):
        if "verbose" in estimator.get_params(deep=False):
            estimator.set_params(verbose=0)
    return model


def _path_of(item: Any) -> str:
    """The path of an input: a path-like, or a skipped folder entry."""
    from ..datasets.folders import SkippedEntry

    return item.path if isinstance(item, SkippedEntry) else os.fspath(item)


def predict_frame(model: Any, paths: Sequence[Any]) -> pandas.DataFrame:
    """Predict ``paths`` with a fitted model: one row per path, in order, unreadable ones too.

    Parameters
    ----------
    model : SentimentClassifier or SentimentEnsemble
        A fitted (or loaded) model.
    paths : sequence of path-like or SkippedEntry
        Image files. They are decoded together, so pass a chunk of a long list at a time. A
        :class:`~wjsentiment.datasets.SkippedEntry` (a folder a walk could not enter) gets
        an error row with its reason.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`prediction_columns`. ``label`` is the class ``predict`` gives
        (as text), ``rule`` the model's ``decision_rule_`` and the ``proba_`` columns are
        ``predict_proba``; for an image that could not be read (missing, truncated, not an
        image) ``label`` and ``rule`` are empty, the probabilities are NaN and ``error`` says
        why. Text columns have dtype ``object``.

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
    ['path', 'label', 'rule', 'proba_Negative', 'proba_Positive', 'error']
    >>> table["rule"].tolist(), table["error"].tolist()
    (['argmax', ''], ['', 'no such file'])
    """
    import pandas as pd

    from ..datasets.folders import SkippedEntry
    from ..inference import decode_pinned

    items = list(paths)
    paths = [_path_of(item) for item in items]
    reasons = {i: item.reason for i, item in enumerate(items) if isinstance(item, SkippedEntry)}
    files = [i for i in range(len(paths)) if i not in reasons]
    with contextlib.ExitStack() as held:
        decoded = decode_pinned(model, [paths[i] for i in files], held)
        reasons.update({files[k]: reason for k, reason in decoded.items()})
        read = [i for i in files if i not in reasons]
        proba = (model.predict_proba([paths[i] for i in read]) if read
                 else np.zeros((0, len(model.classes_))))
    labels = dict(zip(read, map(str, model.predict_from_proba(proba))))
    classes = model.classes_.tolist()  # the proba_ columns list them in ordinal order
    table_proba = np.full((len(paths), len(classes)), np.nan)
    table_proba[read] = proba[:, [classes.index(c) for c in ordinal_labels(classes)]]
    rows = range(len(paths))
    texts = (paths, [labels.get(i, "") for i in rows],
             [model.decision_rule_ if i in labels else "" for i in rows])
    columns = prediction_columns(model.classes_)
    return pd.DataFrame({
        **{name: pd.Series(values, dtype=object) for name, values in zip(columns, texts)},
        **dict(zip(columns[3:-1], table_proba.T)),
        columns[-1]: pd.Series([reasons.get(i, "") for i in rows], dtype=object),
    })


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
    """16 bytes that stand for ``path`` (in the set of paths already written, and in the name
    of an output's lock)."""
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def _complete_records(handle: IO[bytes], size: int,
                      path: str | os.PathLike) -> Iterator[tuple[list[str], int]]:
    """The CSV records of ``handle``, each with the byte offset just after it; stops before a
    last record that the end of the file cuts short (no final newline, or an open quote)."""
    offset, ended = 0, True

    def lines() -> Iterator[str]:
        nonlocal offset, ended
        for raw in handle:
            offset, ended = offset + len(raw), raw.endswith(b"\n")
            yield raw.decode(_CSV_TEXT["encoding"], _CSV_TEXT["errors"])

    reader = csv.reader(lines(), strict=True)
    try:
        for record in reader:
            if ended:  # else the last line, cut short
                yield record, offset
    except csv.Error as exc:
        if offset < size:  # an open quote at the end is a row cut short; this is not
            raise PredictionsFileError(f"{path} is not a valid CSV file near line "
                                       f"{reader.line_num} ({exc}); fix it or start a new "
                                       "file.") from None


class _PredictionsFile(contextlib.ExitStack):
    """The output of :func:`predict_csv`: the paths a resumed file holds already, and where
    new rows go, a chunk at a time, flushed and synced; closes what it opened on exit.

    Until a readable image has been predicted (here, or in the rows a resumed file holds),
    rows wait in a temporary file, so a run that reads nothing leaves the output untouched.
    The paths already written are kept as a sorted array of 16-byte digests (16 bytes a row,
    not the paths).
    """

    def __init__(self, out: str | os.PathLike | IO[str], columns: list[str], *,
                 resume: bool) -> None:
        super().__init__()
        self.out, self.columns = out, columns
        self.to_file = isinstance(out, (str, os.PathLike))
        self.handle: IO[str] | None = None
        self.pending: IO[str] | None = None
        self.done = np.empty(0, dtype="S16")
        self.has_header = False
        if resume and self._read_written():
            self._start()

    def _read_written(self) -> bool:
        """Read the rows of the file to resume (a missing file holds none) and cut off a
        partial last row; whether one of them is of a readable image.

        A run killed while writing can leave its last row cut short: the file is truncated
        after the last complete row, which this run then writes again. Anything else that is
        not a row of the columns is an error naming the line.
        """
        if not os.path.exists(self.out):
            return False
        digests, readable, end = bytearray(), False, 0
        with open(self.out, "r+b") as handle:
            size = os.fstat(handle.fileno()).st_size
            for row, (record, offset) in enumerate(_complete_records(handle, size, self.out)):
                if row == 0 and record != self.columns:
                    raise PredictionsFileError(
                        f"{self.out} does not start with the columns this model writes "
                        f"({','.join(self.columns)}): it holds another model's predictions or "
                        "is not a predictions file. Resume into the file the interrupted "
                        "run wrote, or start a new one.")
                if len(record) != len(self.columns):
                    raise PredictionsFileError(
                        f"{self.out}: row {row} has {len(record)} fields, not "
                        f"{len(self.columns)}; the file was edited or damaged. Fix or remove "
                        "that row to resume.")
                if row > 0:
                    digests += _path_digest(record[0])
                    readable = readable or record[-1] == ""
                end = offset
            if end < size:
                handle.truncate(end)
                os.fsync(handle.fileno())
        self.has_header = end > 0
        self.done = np.sort(np.frombuffer(bytes(digests), dtype="S16"))
        return readable

    def without(self, items: list[Any]) -> list[Any]:
        """``items`` (paths or skipped entries) less those whose path is already written."""
        if not len(self.done):
            return items
        wanted = np.array([_path_digest(_path_of(p)) for p in items], dtype="S16")
        at = np.minimum(np.searchsorted(self.done, wanted), len(self.done) - 1)
        return [p for p, seen in zip(items, self.done[at] == wanted) if not seen]

    @property
    def started(self) -> bool:
        """Whether rows go to the output itself (a readable image has been predicted)."""
        return self.handle is not None

    def _start(self) -> None:
        if self.to_file:
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.enter_context(
                open(self.out, "a" if self.has_header else "w", **_CSV_TEXT))
        else:
            self.handle = self.out
        if not self.has_header:
            csv.writer(self.handle, lineterminator="\n").writerow(self.columns)
        if self.pending is not None:
            self.pending.seek(0)
            shutil.copyfileobj(self.pending, self.handle)

    def write(self, table: pandas.DataFrame, *, readable: bool) -> None:
        if self.handle is None and readable:
            self._start()
        if self.handle is None and self.pending is None:
            self.pending = self.enter_context(tempfile.TemporaryFile("w+", **_CSV_TEXT))
        target = self.pending if self.handle is None else self.handle
        table.to_csv(target, header=False, index=False, float_format=PROBABILITY_FORMAT,
                     lineterminator="\n")
        if target is self.handle:
            self.handle.flush()
            if self.to_file:
                os.fsync(self.handle.fileno())


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of the output file ``out`` for the block; refuse at once (a
    ``TimeoutError`` saying so) while another run holds it.

    The lock is a :class:`filelock.FileLock` on a file named after the real path of ``out``
    in this account's lock folder (:func:`~wjsentiment.persistence.lock_folder`), so nothing
    is added beside the output, and the lock holds between this account's processes on one
    machine. The system drops it when its holder ends, even when it is killed.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(lock_folder() / f"{_path_digest(os.path.realpath(out)).hex()}.lock",
                    timeout=0)
    try:
        held = lock.acquire()  # releases the lock at the end of a with block
    except Timeout:
        raise TimeoutError(f"{os.fspath(out)!r} is being written by another run (a predict "
                           "with the same output); wait for it to end, or write to another "
                           "file.") from None
    with held:
        yield


def predict_csv(model: Any, paths: Iterable[Any], out: str | os.PathLike | IO[str], *,
                batch_size: int = 256, resume: bool = False,
                on_chunk: Callable[[int], None] | None = None) -> PredictionSummary:
    """Predict images into a CSV file, ``batch_size`` at a time, in bounded memory.

    ``paths`` is read lazily (a generator over millions of paths is fine) and each chunk's
    rows (:func:`predict_frame`) are appended to ``out``, flushed and synced before the next
    chunk starts, so an interrupted run loses at most the chunk in flight. With
    ``resume=True`` the inputs whose path is already in ``out`` are skipped and the rest is
    appended: run the same command again after an interruption and the file ends as an
    uninterrupted run would have written it (a path listed twice in the inputs is then
    predicted once). Memory does not grow with the number of images: only the current
    chunk's images, and for a resume 16 bytes per row already written, are held. While it
    runs, the file is locked (:func:`output_lock`): a second call on the same file refuses.

    Parameters
    ----------
    model : SentimentClassifier or SentimentEnsemble
        A fitted (or loaded) model.
    paths : iterable of path-like or SkippedEntry
        The images, in the order their rows are written (see :func:`predict_frame`).
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
    PredictionsFileError
        With ``resume=True``, for a file that is not a predictions file of this model (other
        columns, a damaged row).
    TimeoutError
        While another run writes the same file.
    ValueError
        With ``resume=True`` and a stream for ``out``, or a ``batch_size`` below 1.

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
        raise InputError(f"batch_size must be >= 1, got {batch_size!r}.")
    to_file = isinstance(out, (str, os.PathLike))
    if resume and not to_file:
        raise InputError("resume=True needs out to be a file path (the file to resume).")
    lock = output_lock(out) if to_file else contextlib.nullcontext()
    with lock, _PredictionsFile(out, prediction_columns(model.classes_), resume=resume) as output:
        n_predicted = n_failed = n_skipped = 0
        first_failure: tuple[str, str] | None = None
        inputs = iter(paths)  # chunks of batch_size, until the inputs run out
        for chunk in iter(lambda: list(islice(inputs, int(batch_size))), []):
            todo = output.without(chunk)
            n_skipped += len(chunk) - len(todo)
            if todo:
                table = predict_frame(model, todo)
                failed = table.loc[table["error"] != "", [PATH_COLUMN, "error"]]
                if first_failure is None and len(failed):
                    first_failure = tuple(failed.iloc[0])
                n_predicted += len(todo)
                n_failed += len(failed)
                output.write(table, readable=len(failed) < len(table))
            if on_chunk is not None:
                on_chunk(len(chunk))
        return PredictionSummary(n_predicted, n_failed, n_skipped, first_failure, output.started)
