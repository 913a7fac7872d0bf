"""Your own images: a folder per class, a CSV of paths and labels, and the folder walk that
every command uses to find image files."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.utils import Bunch

from wjsentiment.labels import normalize_label, ordinal_labels

from ..exceptions import InputError, WjsentimentWarning, warn

__all__ = ["SkippedEntry", "iter_image_files", "load_image_csv", "load_image_folder"]

#: File extensions (lower case) that :func:`iter_image_files` picks up.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

_SHOW = 5  # how many offending paths an error message lists

_FOLDER_LAYOUT = (
    "Expected one sub-folder per class holding that class's images, e.g. "
    "root/Positive/img1.jpg, root/Negative/img2.png (extensions: "
    + ", ".join(sorted(IMAGE_EXTENSIONS))
    + ")."
)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(repr(str(x)) for x in items[:_SHOW])
    more = f" and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return shown + more


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class SkippedEntry(NamedTuple):
    """An entry of a folder that :func:`iter_image_files` could not walk into, and why: a
    folder it cannot list (no permission, say), or a link to a folder it has walked already
    (which is how a link loop shows).

    Attributes
    ----------
    path : str
        The entry, as a path under the walked folder.
    reason : str
        Why it was not walked, in a few words.
    """

    path: str
    reason: str


def _kind(entry: os.DirEntry) -> bool | str:
    """True for a folder (or a link to one), False for anything else, or why the entry
    cannot be examined (a link loop, say)."""
    try:
        return entry.is_dir()
    except OSError as exc:
        return exc.strerror or str(exc)


def _folder_entries(path: str, walked: dict[tuple[int, int], str]
                    ) -> list[tuple[str, bool | str]] | SkippedEntry:
    """The sub-folders, image files and unexaminable entries of the folder ``path``, sorted
    by name, each with its kind (see :func:`_kind`); or why the folder is not walked."""
    try:
        info = os.stat(path)
        key = (info.st_dev, info.st_ino)
        if key in walked:
            return SkippedEntry(path, f"a link to {walked[key]!r}, a folder walked already "
                                      "(not walked twice, so link loops end)")
        walked[key] = path
        with os.scandir(path) as scan:
            kinds = sorted((e.name, _kind(e)) for e in scan if not e.name.startswith("."))
    except OSError as exc:
        return SkippedEntry(path, f"cannot list this folder: {exc.strerror or exc}")
    return [(os.path.join(path, name), kind) for name, kind in kinds
            if kind is not False or _is_image_name(name)]


def iter_image_files(folder: str | os.PathLike[str]) -> Iterator[str | SkippedEntry]:
    """The image files under ``folder``, found as they are needed.

    Depth first, the entries of each folder sorted by name. Hidden entries (``.name``) are
    left out; the files picked up are those with an image extension (.jpg .jpeg .png .bmp
    .gif .webp .tif .tiff, any case). Links to folders are followed, but no folder is
    walked twice, so a link loop ends. Only the names of one folder per level are held at a
    time, so a tree of millions of files is never listed whole.

    A folder that cannot be walked, or an entry that cannot be examined (two links that point
    at each other), does not end the walk: a :class:`SkippedEntry` takes its place in the
    sequence, saying why. ``predict`` writes it as an error row;
    :func:`load_image_folder` and ``explain`` leave it out with a warning.

    Parameters
    ----------
    folder : str or path-like
        The folder to walk.

    Yields
    ------
    str or SkippedEntry
        The path of each image file (``folder`` joined with the names below it), or an entry
        that could not be walked.

    Examples
    --------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> for name in ["b.png", "a.JPG", "notes.txt", ".hidden.png"]:
    ...     open(os.path.join(root, name), "w").close()
    >>> os.symlink(root, os.path.join(root, "loop"))
    >>> [os.path.basename(p) if isinstance(p, str) else p.reason[:9]
    ...  for p in iter_image_files(root)]
    ['a.JPG', 'b.png', 'a link to']
    """
    walked: dict[tuple[int, int], str] = {}
    levels = [iter([(os.fspath(folder), True)])]
    while levels:
        path, kind = next(levels[-1], (None, None))
        if path is None:
            levels.pop()
        elif kind is False:
            yield path
        elif kind is not True:
            yield SkippedEntry(path, f"cannot be read: {kind}")
        elif isinstance(listed := _folder_entries(path, walked), SkippedEntry):
            yield listed
        else:
            levels.append(iter(listed))


def _check_images(paths: Sequence[str], headers: bool = True) -> None:
    """Raise if any path is missing or, with ``headers``, does not look like an image (header
    check only)."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image file(s) not found: {_listing(missing)}. "
            "Check the paths (and `root`), or remove those rows."
        )
    if not headers:
        return
    unreadable = []
    for p in paths:
        try:
            Image.open(p).close()  # reads the header only, no full decode
        except Exception as exc:  # Pillow raises several types for bad files
            unreadable.append(f"{p} ({type(exc).__name__})")
    if unreadable:
        raise InputError(
            f"{len(unreadable)} file(s) cannot be read as images: {_listing(unreadable)}. "
            "Replace or remove them."
        )


def _targets(labels: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Normalise sentiment labels if they all are ones, and return (target, target_names)."""
    try:
        normalized = [normalize_label(x) for x in labels]
    except ValueError:
        values = np.asarray(list(labels), dtype=object)
        return values, sorted(set(values.tolist()), key=lambda v: (str(type(v)), v))
    return np.asarray(normalized, dtype=object), ordinal_labels(sorted(set(normalized)))


def _labelled(frame: pd.DataFrame, labels: list[Any], source: str, check_images: bool) -> Bunch:
    """The Bunch of the images ``frame["path"]`` labelled ``labels`` (normalised by
    :func:`_targets`, into the column ``label``), once :func:`_check_images` accepts them."""
    paths = frame["path"].tolist()
    _check_images(paths, headers=check_images)
    target, target_names = _targets(labels)
    frame["label"] = pd.Series(target, dtype=object, index=frame.index)
    counts = frame["label"].value_counts()
    per_class = ", ".join(f"{name} {int(counts.get(name, 0))}" for name in target_names)
    descr = (
        f"Images loaded from {source}: {len(frame)} images in {len(target_names)} classes "
        f"({per_class})."
    )
    return Bunch(paths=paths, target=target, target_names=target_names, frame=frame,
                 DESCR=descr)


def load_image_folder(root: str | os.PathLike[str], *, check_images: bool = True) -> Bunch:
    """Load images laid out as one sub-folder per class (like torchvision's ImageFolder).

    Files are found recursively inside each class folder by :func:`iter_image_files`
    (sorted, hidden entries and files without an image extension left out); a folder
    that cannot be walked (unreadable, or a link loop) is left out with a warning.
    Classes are the sorted folder names, except when
    every folder name is a sentiment label (in any spelling, e.g. ``highly_positive``):
    then labels are normalised and ordered from most negative to most positive.

    Parameters
    ----------
    root : str or path-like
        The folder holding the class folders.
    check_images : bool, default=True
        Open each file's header and refuse the folder if some are not images. False lists the
        files without opening them, for an estimator with ``on_bad_image="skip"`` to leave the
        unreadable ones out.

    Returns
    -------
    sklearn.utils.Bunch
        With keys ``paths`` (list of absolute str paths), ``target`` (ndarray of class
        names), ``target_names`` (list of class names), ``frame`` (DataFrame with
        ``path`` and ``label`` columns) and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    NotADirectoryError
        If ``root`` is a file.
    ValueError
        If there are no class folders, a class folder holds no images, two folder
        names mean the same sentiment label, or (with ``check_images``) some image files
        cannot be read (the error names them).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["positive", "negative"]:
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (4, 4)).save(root / name / "a.png")
    >>> ds = load_image_folder(root)
    >>> ds.target_names
    ['Negative', 'Positive']
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise FileNotFoundError(f"Image folder {str(root_path)!r} does not exist. {_FOLDER_LAYOUT}")
    if not root_path.is_dir():
        raise NotADirectoryError(
            f"{str(root_path)!r} is a file, not a folder. {_FOLDER_LAYOUT} "
            "For a CSV of paths and labels use load_image_csv."
        )
    root_path = root_path.resolve()
    class_dirs = sorted(
        e.name for e in os.scandir(root_path) if e.is_dir() and not e.name.startswith(".")
    )
    if not class_dirs:
        loose = [e.name for e in os.scandir(root_path) if e.is_file() and _is_image_name(e.name)]
        hint = f" It holds {len(loose)} image(s) but no class folders." if loose else ""
        raise InputError(f"No class folders in {str(root_path)!r}.{hint} {_FOLDER_LAYOUT}")

    found = {name: list(iter_image_files(root_path / name)) for name in class_dirs}
    files = {name: [p for p in walk if isinstance(p, str)] for name, walk in found.items()}
    skipped = [p for walk in found.values() for p in walk if isinstance(p, SkippedEntry)]
    if skipped:
        warn(f"Left out {len(skipped)} folder(s) of {str(root_path)!r} that could not be "
             "walked: " + _listing([f"{s.path} ({s.reason})" for s in skipped]),
             WjsentimentWarning)
    empty = [name for name in class_dirs if not files[name]]
    if empty:
        raise InputError(
            f"Class folder(s) with no images in {str(root_path)!r}: {_listing(empty)}. "
            f"Add images or remove those folders. {_FOLDER_LAYOUT}"
        )

    meanings = _targets(class_dirs)[0].tolist()  # the label each folder name stands for
    for name, label in zip(class_dirs, meanings):
        if (other := class_dirs[meanings.index(label)]) != name:
            raise InputError(
                f"Folders {other!r} and {name!r} in {str(root_path)!r} both mean "
                f"the label {label!r}; merge them into one folder."
            )
    frame = pd.DataFrame({"path": [p for name in class_dirs for p in files[name]]})
    labels = [name for name in class_dirs for _ in files[name]]
    return _labelled(frame, labels, f"folder {str(root_path)!r}", check_images)


def load_image_csv(
    path: str | os.PathLike[str],
    image_col: str,
    label_col: str,
    *,
    root: str | os.PathLike[str] | None = None,
    check_images: bool = True,
) -> Bunch:
    """Load images listed in a CSV file with one path and one label per row.

    Relative image paths are resolved against ``root`` (default: the CSV's folder).
    When every label is a sentiment label (in any spelling), labels are normalised and
    ``target_names`` follows the ordinal order; otherwise labels are kept as they are
    and ``target_names`` is sorted.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    image_col : str
        Column holding image paths.
    label_col : str
        Column holding labels.
    root : str or path-like, optional
        Folder that relative image paths start from.
    check_images : bool, default=True
        Open each file's header and refuse the CSV if some are not images. False only checks
        that the files exist, for an estimator with ``on_bad_image="skip"`` to leave the
        unreadable ones out.

    Returns
    -------
    sklearn.utils.Bunch
        With keys ``paths`` (list of absolute str paths), ``target`` (ndarray of
        labels), ``target_names`` (list), ``frame`` (the CSV's columns, plus ``path``,
        the absolute image path, and ``label``, the normalised label) and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        If the CSV or any listed image is missing (the error names them).
    ValueError
        If a column is missing, a row has no path or label, the CSV has no rows, or
        (with ``check_images``) some images cannot be read (the error names them).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (4, 4)).save(folder / "a.png")
    >>> _ = (folder / "labels.csv").write_text("file,sentiment\\na.png,highly positive\\n")
    >>> ds = load_image_csv(folder / "labels.csv", "file", "sentiment")
    >>> ds.target.tolist()
    ['Highly positive']
    """
    csv_path = Path(path).expanduser()
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV file {str(csv_path)!r} does not exist.")
    table = pd.read_csv(csv_path)
    for argument, column in (("image_col", image_col), ("label_col", label_col)):
        if column not in table.columns:
            raise InputError(
                f"{argument}={column!r} is not a column of {str(csv_path)!r}; "
                f"its columns are {list(table.columns)}."
            )
    if table.empty:
        raise InputError(
            f"{str(csv_path)!r} has no rows; expected one row per image with columns "
            f"{image_col!r} (path) and {label_col!r} (label)."
        )
    blank = table[image_col].isna() | table[label_col].isna()
    if blank.any():
        lines = [f"line {i + 2}" for i in np.flatnonzero(blank.to_numpy())]
        raise InputError(
            f"{int(blank.sum())} row(s) of {str(csv_path)!r} have no {image_col!r} or no "
            f"{label_col!r}: {_listing(lines)}. Fill or drop them."
        )

    base = (Path(root).expanduser() if root is not None else csv_path.parent).resolve()
    frame = table.copy()  # an absolute path stays as it is when joined to the base
    frame["path"] = [str(base / Path(str(value)).expanduser()) for value in table[image_col]]
    return _labelled(frame, table[label_col].tolist(), f"CSV {str(csv_path)!r}", check_images)
