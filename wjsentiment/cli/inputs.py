"""The images that ``predict`` and ``explain`` read: image files, folders and lists of paths."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .checks import CommandError

#: Inputs of ``predict`` read as lists of image paths, by extension (any case): a CSV file
#: with a header (the paths in the ``--path-col`` column), or text with one path a line.
LIST_EXTENSIONS = (".csv", ".txt")


class ImageInputs:
    """The images named by a command's inputs, checked at once and then listed lazily, in the
    order given.

    Every input must exist; a list (with ``path_col``) must have that column. Iterating
    yields each image's path, and a :class:`~wjsentiment.datasets.SkippedEntry` for a folder
    the walk could not enter; the images themselves are read later, a chunk at a time.
    ``blank`` counts the empty entries of the lists, once they have been read.
    """

    def __init__(self, inputs: Sequence[str], path_col: str | None = None) -> None:
        self.blank = 0
        self.path_col = path_col
        self.sources = [(self._kind(item), Path(item).expanduser()) for item in inputs]

    def _kind(self, item: str) -> str:
        path = Path(item).expanduser()
        if path.is_dir():
            return "folder"
        if not path.is_file():
            raise CommandError(f"input {item!r} does not exist.")
        if self.path_col is None or path.suffix.lower() not in LIST_EXTENSIONS:
            return "image"
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as fh:
                columns = next(csv.reader(fh), [])
            if self.path_col not in columns:
                raise CommandError(f"--path-col {self.path_col!r} is not a column of {path} "
                                   f"(columns: {', '.join(columns) or 'none'}).")
        return "list"

    def _of(self, kind: str) -> list[Path]:
        return [path for k, path in self.sources if k == kind]

    def check_folders(self) -> None:
        """Refuse a folder that holds no image file (its walk stops at the first)."""
        from ..datasets.folders import IMAGE_EXTENSIONS, iter_image_files

        for folder in self._of("folder"):
            if next(iter_image_files(folder), None) is None:
                raise CommandError(f"folder {str(folder)!r} holds no image files "
                                   f"({', '.join(sorted(IMAGE_EXTENSIONS))}).")

    def check_output_file(self, out: Path) -> None:
        """Refuse an output file that is one of the inputs (a list or an image): writing it
        would destroy what is still to be read."""
        for path in self._of("list") + self._of("image"):
            if out.exists() and os.path.samefile(out, path):
                raise CommandError(f"--out {str(out)!r} is also an input ({str(path)!r}): "
                                   "writing it would destroy what is still to be read. Write "
                                   "to another file.")

    def check_output_folder(self, out: Path) -> None:
        """Refuse an output folder inside (or equal to) an input folder, whose walk would
        then read the files written into it."""
        real = os.path.realpath(out)
        for folder in self._of("folder"):
            base = os.path.realpath(folder)
            if os.path.commonpath([real, base]) == base:
                raise CommandError(f"--out {str(out)!r} is inside the input folder "
                                   f"{str(folder)!r}, whose walk would read what is written "
                                   "there. Choose a folder outside it.")

    def __iter__(self) -> Iterator[Any]:
        from ..datasets.folders import iter_image_files

        for kind, path in self.sources:
            if kind == "folder":
                yield from iter_image_files(path)
            elif kind == "list":
                yield from self._list_entries(path)
            else:
                yield str(path)

    def _list_entries(self, path: Path) -> Iterator[str]:
        """The image paths a .csv or .txt list names, relative ones joined to its folder."""
        with open(path, encoding="utf-8-sig", newline="") as fh:
            if path.suffix.lower() == ".csv":
                values = ((row.get(self.path_col) or "") for row in csv.DictReader(fh))
            else:
                values = iter(fh)
            for value in values:
                entry = value.strip()
                if entry:
                    yield str(path.parent / os.path.expanduser(entry))
                else:
                    self.blank += 1
