"""Load your own labelled images: a folder per class, or a CSV of paths and labels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.utils import Bunch

from wjsentiment.labels import normalize_label, ordinal_labels

__all__ = ["load_image_csv", "load_image_folder"]

#: File extensions (lower case) that :func:`load_image_folder` picks up.
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
            with Image.open(p):  # reads the header only, no full decode
                pass
        except Exception as exc:  # Pillow raises several types for bad files
            unreadable.append(f"{p} ({type(exc).__name__})")
    if unreadable:
        raise ValueError(
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


def _make_bunch(frame: pd.DataFrame, target_names: list[Any], source: str) -> Bunch:
    counts = frame["label"].value_counts()
    per_class = ", ".join(f"{name} {int(counts.get(name, 0))}" for name in target_names)
    descr = (
        f"Images loaded from {source}: {len(frame)} images in {len(target_names)} classes "
        f"({per_class})."
    )
    return Bunch(
        paths=frame["path"].tolist(),
        target=frame["label"].to_numpy(dtype=object),
        target_names=target_names,
        frame=frame,
        DESCR=descr,
    )


def load_image_folder(root: str | os.PathLike[str], *, check_images: bool = True) -> Bunch:
    """Load images laid out as one sub-folder per class (like torchvision's ImageFolder).

    Files are found recursively inside each class folder; hidden files and folders
    and files without an image extension (.jpg .jpeg .png .bmp .gif .webp .tif
    .tiff, any case) are ignored. Classes are the sorted folder names, except when
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
        raise ValueError(f"No class folders in {str(root_path)!r}.{hint} {_FOLDER_LAYOUT}")

    files: dict[str, list[str]] = {}
    for name in class_dirs:
        found = []
        for dirpath, dirnames, filenames in os.walk(root_path / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(os.path.join(dirpath, f) for f in sorted(filenames) if _is_image_name(f))
        files[name] = found
    empty = [name for name in class_dirs if not files[name]]
    if empty:
        raise ValueError(
            f"Class folder(s) with no images in {str(root_path)!r}: {_listing(empty)}. "
            f"Add images or remove those folders. {_FOLDER_LAYOUT}"
        )

    try:
        canonical = {name: normalize_label(name) for name in class_dirs}
    except ValueError:
        canonical = {name: name for name in class_dirs}
        target_names = list(class_dirs)
    else:
        by_label: dict[str, str] = {}
        for name, label in canonical.items():
            if label in by_label:
                raise ValueError(
                    f"Folders {by_label[label]!r} and {name!r} in {str(root_path)!r} both mean "
                    f"the label {label!r}; merge them into one folder."
                )
            by_label[label] = name
        target_names = ordinal_labels(sorted(set(canonical.values())))

    paths = [p for name in class_dirs for p in files[name]]
    labels = [canonical[name] for name in class_dirs for _ in files[name]]
    _check_images(paths, headers=check_images)
    frame = pd.DataFrame({"path": paths, "label": pd.Series(labels, dtype=object)})
    return _make_bunch(frame, target_names, f"folder {str(root_path)!r}")


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
            raise ValueError(
                f"{argument}={column!r} is not a column of {str(csv_path)!r}; "
                f"its columns are {list(table.columns)}."
            )
    if table.empty:
        raise ValueError(
            f"{str(csv_path)!r} has no rows; expected one row per image with columns "
            f"{image_col!r} (path) and {label_col!r} (label)."
        )
    blank = table[image_col].isna() | table[label_col].isna()
    if blank.any():
        lines = [f"line {i + 2}" for i in np.flatnonzero(blank.to_numpy())]
        raise ValueError(
            f"{int(blank.sum())} row(s) of {str(csv_path)!r} have no {image_col!r} or no "
            f"{label_col!r}: {_listing(lines)}. Fill or drop them."
        )

    base = Path(root).expanduser() if root is not None else csv_path.parent
    base = base.resolve()
    paths = []
    for value in table[image_col]:
        p = Path(str(value)).expanduser()
        paths.append(str(p if p.is_absolute() else base / p))
    _check_images(paths, headers=check_images)

    target, target_names = _targets(table[label_col].tolist())
    frame = table.copy()
    frame["path"] = paths
    frame["label"] = pd.Series(target, dtype=object, index=frame.index)
    return _make_bunch(frame, target_names, f"CSV {str(csv_path)!r}")
