"""What commands check before any work, and how they report a failure: paths (a model
folder, an output folder or file), with the standard library only, so that a mistyped path
is answered at once, before torch is imported."""

from __future__ import annotations

import os
import re
from pathlib import Path


class CommandError(Exception):
    """A failure the command reports in one line (exit status 1)."""


def one_line(exc: BaseException | Warning) -> str:
    """The error (or warning) as one line, without the "[Errno 2]" prefix of OS errors."""
    text = re.sub(r"^\[Errno \d+\] ", "", str(exc))
    return " ".join(text.split()) or type(exc).__name__


def saved_model(path: str) -> str:
    """``path``, if it is a folder (the model in it is checked as it loads)."""
    if not os.path.isdir(path):
        what = "is a file" if os.path.exists(path) else "does not exist"
        raise CommandError(f"model folder {path!r} {what}; give the folder `wjsentiment fit` "
                           "wrote (OUT/model) or that .save() wrote.")
    return path


def writable_folder(path: str) -> Path:
    """``path`` (an ``--out``) as a folder the command can write into, now or once created."""
    folder = Path(path).expanduser()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)  # the nearest
    if not existing.is_dir():
        raise CommandError(f"--out {path!r} cannot be a folder: {str(existing)!r} is a "
                           "file. Choose another folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"--out {path!r}: no permission to write into "
                           f"{str(existing)!r}. Choose another folder.")
    return folder


def writable_file(path: str) -> Path:
    """``path`` (an ``--out``) as a file the command can write (its folder writable, now or once
    made)."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise CommandError(f"--out {path!r} is a folder; give a file name.")
    writable_folder(str(file.parent))
    return file
