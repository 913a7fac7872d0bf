"""Saving and loading models safely: safetensors for tensors, JSON for everything else.

Nothing is unpickled and no code runs on load. A save writes into a temporary folder beside
the target and renames it into place, so an interrupted save never leaves a half-written model.
Loading checks what it reads (file sizes, the JSON against a schema, the format version and the
kind of model) and reports any damage as one :class:`ModelFileError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:  # torch is imported by the functions that need it: the CLI starts fast
    import torch

__all__ = ["ModelFileError", "atomic_file", "atomic_folder", "check_tensor_shapes",
           "decode_classes", "encode_classes", "load_bundle", "model_file_errors", "read_config",
           "read_saved_config", "save_bundle", "schema_problem", "write_config"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Version of the saved-model layout. 2 adds the calibration (temperature, logit adjustment,
#: class prior); version 1 folders still load, uncalibrated.
FORMAT_VERSION = 2

#: A JSON schema in plain Python: a type (``int`` refuses booleans, ``float`` takes ints), a
#: tuple of alternatives, a dict of required keys (more keys are allowed) or a one-item list
#: ``[item_schema]`` for a list of such items.
Schema = Union[type, tuple, dict, list]  # noqa: UP007 - a runtime alias

#: The JSON form of a ``classes_`` array (see :func:`encode_classes`).
CLASSES_SCHEMA: dict[str, Schema] = {"values": list, "dtype": str}

#: What :meth:`SentimentClassifier.save <wjsentiment.SentimentClassifier.save>` writes to
#: ``config.json`` (besides ``format_version`` and ``estimator``). Parameters missing from
#: ``params`` take their defaults, so models saved before a parameter existed still load.
CLASSIFIER_SCHEMA: dict[str, Schema] = {
    "params": dict,
    "class_weight": (type(None), str, {"pairs": [list]}),
    "classes": CLASSES_SCHEMA,
    "spec": {"backbone": str, "head": str, "n_classes": int},
    "history": [dict],
    "n_epochs": int,
    "best_epoch": int,
    "weights_source": str,
    "skipped": [list],
}

_DAMAGED = ("The file is damaged or was edited by hand: restore the model folder from a good "
            "copy, or fit and save the model again.")


class ModelFileError(ValueError):
    """A saved model's file is damaged, edited into something invalid, or of another kind.

    Raised by ``SentimentClassifier.load``, ``SentimentEnsemble.load`` and
    :func:`load_bundle` for every problem with what a model folder holds (a missing folder or
    file stays a ``FileNotFoundError``). A ``ValueError``, so ``except ValueError`` catches it.

    Attributes
    ----------
    path : str
        The file at fault.
    problem : str
        What is wrong with it.

    Examples
    --------
    >>> str(ModelFileError("m/config.json", "it is empty (0 bytes)", "Save it again."))
    "Cannot load 'm/config.json': it is empty (0 bytes). Save it again."
    """

    def __init__(self, path: str | os.PathLike, problem: str, advice: str = _DAMAGED) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"Cannot load {self.path!r}: {problem}. {advice}")


@contextlib.contextmanager
def model_file_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn any error while making sense of ``path``'s content into a :class:`ModelFileError`.

    For the code that rebuilds an object from a checked config: what the schema cannot
    express (a value out of range, a list of the wrong length) still names the file.
    """
    try:
        yield
    except ModelFileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        text = str(exc).rstrip(".")
        kind = "" if type(exc) is ValueError else f"{type(exc).__name__}: "
        raise ModelFileError(path, f"{kind}{text}") from exc


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
        write_config(tmp / CONFIG_FILE, config, FORMAT_VERSION)
    return Path(path)


def load_bundle(
    path: str | os.PathLike, *, estimator: str | None = None, schema: Schema | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read what :func:`save_bundle` wrote: the tensors and the JSON config, both checked.

    Parameters
    ----------
    path : path-like
        The model folder.
    estimator : str, optional
        The kind of model expected (the config's ``"estimator"``), e.g.
        ``"SentimentClassifier"``.
    schema : dict, optional
        What the config must hold (see :func:`schema_problem`).

    Returns
    -------
    tensors : dict of str to torch.Tensor
    config : dict

    Raises
    ------
    FileNotFoundError
        Naming the folder and the missing file.
    ModelFileError
        If a file is empty, truncated or not what it should be, the config does not fit
        ``schema`` or is of another estimator, or the model was saved by a newer format.

    Examples
    --------
    >>> load_bundle("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: No saved wjsentiment model at 'no/such/folder': config.json is missing...
    """
    config_file, weights_file = _require(path, CONFIG_FILE), _require(path, WEIGHTS_FILE)
    config = read_config(config_file, FORMAT_VERSION, estimator=estimator, schema=schema)
    return _read_tensors(weights_file), config


def _require(folder: str | os.PathLike, name: str, estimator: str | None = None) -> Path:
    """``folder / name``, or a FileNotFoundError naming both when it is not a file."""
    file = Path(folder) / name
    if not file.is_file():
        what = estimator or "wjsentiment model"
        raise FileNotFoundError(f"No saved {what} at {str(folder)!r}: {name} is missing. Pass "
                                f"the folder written by {estimator or ''}.save().")
    return file


def read_saved_config(folder: str | os.PathLike, name: str, format_version: int, *,
                      estimator: str | None = None, schema: Schema | None = None
                      ) -> dict[str, Any]:
    """The checked JSON config ``name`` of the saved model in ``folder`` (see
    :func:`read_config`): where both estimators' ``load`` check the kind of model and the
    format version.

    Raises
    ------
    FileNotFoundError
        Naming the folder and the missing file.
    ModelFileError
        See :func:`read_config`.
    """
    file = _require(folder, name, estimator)
    return read_config(file, format_version, estimator=estimator, schema=schema)


def write_config(path: str | os.PathLike, config: dict[str, Any], format_version: int) -> None:
    """Write a model's JSON ``config`` to ``path``, stamped with its ``format_version``.

    Examples
    --------
    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "config.json"
    >>> write_config(file, {"estimator": "Demo"}, 1)
    >>> read_config(file, 1, estimator="Demo")
    {'format_version': 1, 'estimator': 'Demo'}
    """
    payload = {"format_version": format_version, **config}
    Path(path).write_text(json.dumps(payload, indent=2, default=json_default), encoding="utf-8")


def read_config(
    path: str | os.PathLike,
    format_version: int,
    *,
    estimator: str | None = None,
    schema: Schema | None = None,
) -> dict[str, Any]:
    """Read and check a model's JSON config: the one place the kind and version are checked.

    In this order: the file is readable, non-empty UTF-8 JSON holding an object; its
    ``format_version`` is a known one (a newer one asks to upgrade); its ``"estimator"`` is
    ``estimator``; and it fits ``schema``.

    Parameters
    ----------
    path : path-like
        The JSON file.
    format_version : int
        The newest format this wjsentiment reads.
    estimator : str, optional
        The kind of model expected.
    schema : dict, optional
        What the config must hold (see :func:`schema_problem`).

    Returns
    -------
    dict

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFileError
        For anything else wrong with it, naming the file and the problem.

    Examples
    --------
    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "config.json"
    >>> _ = file.write_text('{"format_version": 9}')
    >>> read_config(file, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.persistence.ModelFileError: Cannot load '...config.json': it was saved by a newer...
    """
    path = Path(path)
    config = _read_json(path)
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problem = ("it has no format_version" if "format_version" not in config
                   else f"its format_version {version!r} is not a version (an integer >= 1)")
        raise ModelFileError(path, problem)
    if version > format_version:
        raise ModelFileError(
            path, f"it was saved by a newer wjsentiment (format {version}; this one reads "
            f"format {format_version} and older)", "Upgrade wjsentiment to load it.")
    found = config.get("estimator")
    if estimator is not None and found != estimator:
        advice = (f"Load it with {found}.load()." if isinstance(found, str) and found
                  else _DAMAGED)
        raise ModelFileError(path, f"it holds a {found}, not a {estimator}", advice)
    if schema is not None:
        problem = schema_problem(config, schema)
        if problem is not None:
            raise ModelFileError(path, problem)
    return config


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; every way it can fail is a :class:`ModelFileError`."""
    if not path.is_file():
        raise FileNotFoundError(f"No saved wjsentiment model file at {str(path)!r}.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(path, f"it cannot be read ({exc.strerror or exc})",
                             "Check its permissions.") from exc
    if not raw.strip():
        raise ModelFileError(path, f"it is empty ({len(raw)} bytes)")
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelFileError(path, f"it is not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"it is not valid JSON ({exc.msg} at line {exc.lineno}, "
                                   f"column {exc.colno})") from exc
    if not isinstance(config, dict):
        raise ModelFileError(path, f"it holds {_json_kind(config)}, not a JSON object")
    return config


#: Bytes before the header of a safetensors file: the header's length, little-endian.
_SAFETENSORS_PREFIX = 8


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, after checking its size against its own header."""
    from safetensors.torch import load_file

    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(path, "it is empty (0 bytes)")
    with open(path, "rb") as fh:
        prefix = fh.read(_SAFETENSORS_PREFIX)
        n_header = int.from_bytes(prefix, "little") if len(prefix) == _SAFETENSORS_PREFIX else -1
        if n_header < 0 or _SAFETENSORS_PREFIX + n_header > size:
            raise ModelFileError(path, f"it is truncated or not a safetensors file ({size} "
                                       "bytes, shorter than the header it announces)")
        try:
            header = json.loads(fh.read(n_header).decode("utf-8"))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise ModelFileError(path, "it is not a safetensors file (its header is not the "
                                       "JSON table of tensors it should be)") from exc
    expected = _SAFETENSORS_PREFIX + n_header + max(ends, default=0)
    if size != expected:
        how = "truncated" if size < expected else "longer than its header says"
        raise ModelFileError(path, f"it is {how} ({size} bytes, its header describes "
                                   f"{expected})")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type and others
        raise ModelFileError(path, f"it is not a valid safetensors file ({exc})") from exc


def check_tensor_shapes(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                        expected: dict[str, tuple[int, ...]], network: str) -> None:
    """Raise a :class:`ModelFileError` unless ``tensors`` has exactly the ``expected`` shapes.

    ``network`` describes what the config says the tensors are for (named in the message).

    Examples
    --------
    >>> import torch
    >>> check_tensor_shapes("model.safetensors", {"w": torch.ones(2)}, {"w": (3,)}, "a net")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.persistence.ModelFileError: Cannot load 'model.safetensors': its tensors do not...
    """
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    wrong = [f"{k!r} is {tuple(tensors[k].shape)}, expected {expected[k]}"
             for k in expected if k in tensors and tuple(tensors[k].shape) != expected[k]]
    problems = ([f"missing {_some(missing)}"] if missing else []) + \
        ([f"unexpected {_some(extra)}"] if extra else []) + wrong[:3]
    if problems:
        raise ModelFileError(path, f"its tensors do not fit {network} ({'; '.join(problems)})")


def _some(names: list[str], show: int = 3) -> str:
    more = f" and {len(names) - show} more" if len(names) > show else ""
    return ", ".join(repr(n) for n in names[:show]) + more


# ------------------------------------------------------------------------------ the schema
_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          dict: "an object", list: "a list", type(None): "null"}


def _json_kind(value: Any) -> str:
    for kind in (bool, int, float, str, dict, list, type(None)):
        if isinstance(value, kind):
            return _KINDS[kind]
    return type(value).__name__


def _describe(schema: Schema) -> str:
    if isinstance(schema, tuple):
        return " or ".join(_describe(s) for s in schema)
    if isinstance(schema, dict):
        return f"an object with the keys {sorted(schema)}"
    if isinstance(schema, list):
        item = "object" if isinstance(schema[0], dict) else _describe(schema[0])
        return f"a list of {item.removeprefix('an ').removeprefix('a ')}s"
    return _KINDS[schema]


def _fits_type(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def schema_problem(value: Any, schema: Schema, where: str = "") -> str | None:
    """The first way ``value`` (parsed JSON) does not fit ``schema``, or None if it fits.

    A schema is a type (``int`` refuses booleans, ``float`` takes ints), a tuple of
    alternatives, a dict of required keys (more keys are allowed) or a one-item list
    ``[item_schema]``.

    Examples
    --------
    >>> schema = {"spec": {"n_classes": int}, "history": [dict]}
    >>> schema_problem({"spec": {"n_classes": "2"}, "history": []}, schema)
    "spec.n_classes must be an integer, got a string ('2')"
    >>> schema_problem({"spec": {"n_classes": 2}}, schema)
    "the key 'history' is missing"
    >>> schema_problem({"spec": {"n_classes": 2}, "history": [{}]}, schema) is None
    True
    """
    name = where or "the config"
    if isinstance(schema, tuple):
        if any(schema_problem(value, s, where) is None for s in schema):
            return None
        return f"{name} must be {_describe(schema)}, got {_shown(value)}"
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"{name} must be an object, got {_shown(value)}"
        for key, sub in schema.items():
            inner = f"{where}.{key}" if where else key
            if key not in value:
                return f"the key {inner!r} is missing"
            problem = schema_problem(value[key], sub, inner)
            if problem is not None:
                return problem
        return None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"{name} must be {_describe(schema)}, got {_shown(value)}"
        for i, item in enumerate(value):
            problem = schema_problem(item, schema[0], f"{name}[{i}]")
            if problem is not None:
                return problem
        return None
    if not _fits_type(value, schema):
        return f"{name} must be {_describe(schema)}, got {_shown(value)}"
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{_json_kind(value)} ({text})" if not isinstance(value, str) else \
        f"a string ({value[:37]!r})"


def json_default(value: Any) -> Any:
    """The ``default`` of :func:`json.dumps` for numpy values and paths.

    Examples
    --------
    >>> json.dumps({"n": np.int64(3), "v": np.arange(2)}, default=json_default)
    '{"n": 3, "v": [0, 1]}'
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Cannot write a {type(value).__name__} to JSON.")
