"""Saving and loading models safely: safetensors for tensors, JSON for everything else.

Nothing is unpickled and no code runs on load. A save writes into a temporary folder beside
the target and renames it into place, so an interrupted save never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported by the functions that need it: the CLI starts fast
    import torch

__all__ = ["atomic_file", "atomic_folder", "decode_classes", "encode_classes", "load_bundle",
           "save_bundle"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Version of the saved-model layout. 2 adds the calibration (temperature, logit adjustment,
#: class prior); version 1 folders still load, uncalibrated.
FORMAT_VERSION = 2


def encode_classes(classes: np.ndarray) -> dict[str, Any]:
    """JSON form of a ``classes_`` array (values and dtype).

    Examples
    --------
    >>> encode_classes(np.array(["Negative", "Positive"]))
    {'values': ['Negative', 'Positive'], 'dtype': 'str'}
    """
    kind = classes.dtype.kind
    values = [v.item() if hasattr(v, "item") else v for v in classes.tolist()]
    return {"values": values, "dtype": "str" if kind in "US" else str(classes.dtype)}


def decode_classes(data: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_classes`.

    Examples
    --------
    >>> decode_classes(encode_classes(np.array([0, 2, 4]))).tolist()
    [0, 2, 4]
    """
    if data["dtype"] == "str":
        return np.array(data["values"], dtype=str)
    if data["dtype"] == "object":
        return np.array(data["values"], dtype=object)
    return np.array(data["values"], dtype=data["dtype"])


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    Readers never see a half-written file: on any error the temporary file is removed and
    ``path`` keeps its old content.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "metrics.json"
    >>> with atomic_file(target, encoding="utf-8") as fh:
    ...     _ = fh.write("{}")
    >>> target.read_text()
    '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``path``, then swap it into place.

    The caller writes into the yielded folder. On success it replaces ``path`` (an existing
    folder there is removed only after the new one is complete); on any error the temporary
    folder is deleted and ``path`` is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out"
    >>> with atomic_folder(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("done")
    >>> (target / "a.txt").read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_bundle(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                config: dict[str, Any]) -> Path:
    """Write ``tensors`` (safetensors) and ``config`` (JSON) into the folder ``path``, atomically.

    An existing model at ``path`` is replaced only once the new one is complete.

    Examples
    --------
    >>> import tempfile, torch
    >>> folder = Path(tempfile.mkdtemp()) / "model"
    >>> _ = save_bundle(folder, {"w": torch.ones(2)}, {"note": "hi"})
    >>> tensors, config = load_bundle(folder)
    >>> tensors["w"].tolist(), config["note"]
    ([1.0, 1.0], 'hi')
    """
    from safetensors.torch import save_file

    with atomic_folder(path) as tmp:
        flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(flat, str(tmp / WEIGHTS_FILE))
        payload = {"format_version": FORMAT_VERSION, **config}
        (tmp / CONFIG_FILE).write_text(json.dumps(payload, indent=2, default=_json_default))
    return Path(path)


def load_bundle(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_bundle` wrote: the tensors and the JSON config.

    Raises
    ------
    FileNotFoundError
        Naming the folder and the missing file.
    ValueError
        If the model was saved by a newer format.

    Examples
    --------
    >>> load_bundle("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: No saved wjsentiment model at 'no/such/folder': config.json is missing...
    """
    from safetensors.torch import load_file

    path = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"No saved wjsentiment model at {str(path)!r}: {name} is missing. Pass the folder "
                "written by .save()."
            )
    config = json.loads((path / CONFIG_FILE).read_text())
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"The model at {str(path)!r} was saved by a newer wjsentiment (format "
            f"{config['format_version']}); upgrade wjsentiment to load it."
        )
    return load_file(str(path / WEIGHTS_FILE)), config


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Cannot store {type(value).__name__} in a saved model's JSON config.")
