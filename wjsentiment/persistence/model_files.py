"""Saved models: what a classifier's or an ensemble's folder holds, written and read back.

A classifier's folder holds ``config.json`` (the schema of :mod:`.schemas`) and
``model.safetensors`` (the network's tensors); an ensemble's holds ``ensemble.json``
(the schema of :mod:`.schemas`) and one classifier folder per member. This module reads
and writes those states and never builds an estimator: the estimators build themselves from
what :func:`load_classifier` and :func:`load_ensemble` return, and hand
:func:`save_classifier` and :func:`save_ensemble` their state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..exceptions import InputError, ModelFileError
from ..params import CLASSIFIER_PARAMS, defaults
from .files import atomic_folder
from .schemas import (
    CLASSIFIER,
    ENSEMBLE,
    FORMAT_VERSION,
    MIGRATIONS,
    json_kind,
    schema,
    schema_problem,
)

if TYPE_CHECKING:  # torch is imported by the functions that need it: the CLI starts fast
    import torch

__all__ = ["CONFIG_FILE", "ENSEMBLE_FILE", "WEIGHTS_FILE", "SavedModel",
           "check_tensor_shapes", "decode_classes", "encode_classes", "is_saved_model",
           "json_default", "load_classifier", "load_ensemble", "model_file_errors",
           "read_config", "read_tensors", "save_classifier", "save_ensemble"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ENSEMBLE_FILE = "ensemble.json"
#: What an ensemble member's sub-folder may be called (no path separators, no "..").
_SAFE_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_WHAT = "a saved wjsentiment model"


class SavedModel(NamedTuple):
    """A classifier's folder as :func:`load_classifier` read it: ``config.json``, checked and
    upgraded to :data:`~.schemas.FORMAT_VERSION` (``classes`` as a numpy array,
    ``class_weight`` as the parameter's value), and the tensors."""

    folder: Path
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]


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
        kind = "" if isinstance(exc, ValueError) else f"{type(exc).__name__}: "
        raise ModelFileError(path, f"{kind}{str(exc).rstrip('.')}") from exc


def encode_classes(classes: np.ndarray) -> dict[str, Any]:
    """JSON form of a ``classes_`` array (values and dtype).

    Examples
    --------
    >>> encode_classes(np.array(["Negative", "Positive"]))
    {'values': ['Negative', 'Positive'], 'dtype': 'str'}
    """
    values = [v.item() if hasattr(v, "item") else v for v in classes.tolist()]
    return {"values": values, "dtype": "str" if classes.dtype.kind in "US" else str(classes.dtype)}


def decode_classes(data: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_classes`.

    Examples
    --------
    >>> decode_classes(encode_classes(np.array([0, 2, 4]))).tolist()
    [0, 2, 4]
    """
    dtype = {"str": str, "object": object}.get(data["dtype"], data["dtype"])
    return np.array(data["values"], dtype=dtype)


def json_default(value: Any) -> Any:
    """The ``default`` of :func:`json.dumps` for numpy values, pandas Series and paths.

    Examples
    --------
    >>> json.dumps({"n": np.int64(3), "v": np.arange(2)}, default=json_default)
    '{"n": 3, "v": [0, 1]}'
    """
    if hasattr(value, "tolist"):  # numpy scalars and arrays, pandas Series
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Cannot write a {type(value).__name__} to JSON.")


# ------------------------------------------------------------------------------ reading
def _require(folder: Path, name: str, kind: str) -> Path:
    """``folder / name``, or a FileNotFoundError naming both when it is not a file."""
    if not (folder / name).is_file():
        raise FileNotFoundError(f"No saved wjsentiment model at {str(folder)!r}: {name} is "
                                f"missing. Pass the folder that {kind}.save() wrote.")
    return folder / name


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; every way it can fail is a :class:`ModelFileError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(path, f"it cannot be read ({exc.strerror or exc})",
                             "Check its permissions.") from exc
    if not raw.strip():
        raise ModelFileError(path, f"it is empty ({len(raw)} bytes)")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelFileError(path, f"it is not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"it is not valid JSON ({exc.msg} at line {exc.lineno}, "
                                   f"column {exc.colno})") from exc
    except RecursionError as exc:
        raise ModelFileError(path, "it is nested too deeply to be a model's JSON") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ModelFileError(path, f"it holds a value JSON readers refuse ({exc})") from exc


def read_config(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Read and check a saved model's JSON file, upgraded to :data:`~.schemas.FORMAT_VERSION`.

    In this order: the file is non-empty UTF-8 JSON holding an object; its
    ``format_version`` is one this wjsentiment reads (a newer one asks to upgrade); its
    ``"estimator"`` is ``kind``; it fits the schema of its version; then the migrations of
    :data:`~.schemas.MIGRATIONS` bring it to the current version.

    Parameters
    ----------
    path : path-like
        The JSON file.
    kind : {"SentimentClassifier", "SentimentEnsemble"}
        The kind of model expected.

    Raises
    ------
    ModelFileError
        For anything wrong with it, naming the file and the problem.

    Examples
    --------
    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "config.json"
    >>> _ = file.write_text('{"format_version": 9}')
    >>> read_config(file, "SentimentClassifier")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.ModelFileError: Cannot load '...config.json': it was saved by a newer...
    """
    path = Path(path)
    config = _read_json(path)
    if not isinstance(config, dict):
        raise ModelFileError(path, f"it holds {json_kind(config)}, not a JSON object")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, "it has no format_version" if "format_version" not in config
                             else f"its format_version {version!r} is not a version (an "
                             "integer >= 1)")
    if version > FORMAT_VERSION:
        raise ModelFileError(path, f"it was saved by a newer wjsentiment (format {version}; "
                             f"this one reads format {FORMAT_VERSION} and older)",
                             "Upgrade wjsentiment to load it.")
    found = config.get("estimator")
    if found != kind:
        raise ModelFileError(path, f"it holds a {found}, not a {kind}",
                             f"Load it with {found}.load()." if found in (CLASSIFIER, ENSEMBLE)
                             else "Pass the folder of a saved model.")
    problem = schema_problem(config, schema(kind, version))
    if problem is not None:
        raise ModelFileError(path, problem)
    for older in range(version, FORMAT_VERSION):
        config = MIGRATIONS[kind, older](config)
    return config


#: What safetensors' errors mean, in the words of the rest of this module.
_SAFETENSORS_PROBLEMS = {
    "header too small": "it is truncated or not a safetensors file (too short for a header)",
    "header too large": "it is truncated or not a safetensors file (shorter than the header "
                        "it announces)",
    "not fully covered": "it is truncated or longer than its header says (its size does not "
                         "match the tensors its header lists)",
}


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (on the CPU); every failure is a
    :class:`ModelFileError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(path, "it is empty (0 bytes)")
    try:
        return load_file(str(path))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        problem = next((words for key, words in _SAFETENSORS_PROBLEMS.items()
                        if key in str(exc)), f"it is not a safetensors file ({exc})")
        raise ModelFileError(path, f"{problem}; {size} bytes") from exc


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
    wjsentiment.exceptions.ModelFileError: Cannot load 'model.safetensors': its tensors do...
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


def load_classifier(path: str | os.PathLike) -> SavedModel:
    """Read a classifier's folder: its checked config and its tensors.

    Besides the schema, the config must hold no parameter this wjsentiment does not know,
    and its classes must be sorted and unique as ``fit`` makes them, as many as the
    network's outputs. (The classifier checks the rest as it builds itself: its
    parameters, the network against the tensors, the calibration against the classes.)

    Raises
    ------
    FileNotFoundError
        Naming the folder and the missing file.
    ModelFileError
        For a damaged, edited or newer file, naming it.
    """
    folder = Path(path)
    config_file = _require(folder, CONFIG_FILE, CLASSIFIER)
    weights_file = _require(folder, WEIGHTS_FILE, CLASSIFIER)
    config = read_config(config_file, CLASSIFIER)
    with model_file_errors(config_file):
        _check_classifier(config, config_file)
    return SavedModel(folder, config, read_tensors(weights_file))


def _check_classifier(config: dict[str, Any], config_file: Path) -> None:
    """Check what the schema cannot say, and decode ``classes`` and ``class_weight``."""
    params, spec = config["params"], config["spec"]
    unknown = sorted(set(params) - set(defaults(CLASSIFIER_PARAMS)))
    if unknown:
        raise ModelFileError(config_file, f"its params hold unknown parameters {unknown}",
                             "It may come from a newer wjsentiment: upgrade wjsentiment.")
    classes = decode_classes(config["classes"])
    if not np.array_equal(np.unique(classes), classes):
        raise InputError(f"its classes {classes.tolist()} are not sorted and unique, as fit "
                         "makes them")
    if len(classes) != spec["n_classes"]:
        raise InputError(f"it lists {len(classes)} classes, but the network's head has "
                         f"{spec['n_classes']} outputs")
    weight = config["class_weight"]
    config["class_weight"] = dict(weight["pairs"]) if isinstance(weight, dict) else weight
    config["classes"] = classes


def load_ensemble(path: str | os.PathLike
                  ) -> tuple[dict[str, Any], list[tuple[str, SavedModel]]]:
    """Read an ensemble's folder: its ``ensemble.json`` (checked and upgraded, ``classes`` as a
    numpy array) and each member's name and folder (see :func:`load_classifier`).

    The vote must fit the members: one weight (non-negative, not all zero) and one positive
    temperature per member, unique member names, each member in a sub-folder of its own,
    and the members' classes those of the ensemble.

    Raises
    ------
    FileNotFoundError
        Naming the folder and the missing file.
    ModelFileError
        For a damaged, edited or newer file, naming it.
    """
    folder = Path(path)
    file = _require(folder, ENSEMBLE_FILE, ENSEMBLE)
    config = read_config(file, ENSEMBLE)
    members = [(meta["name"], load_classifier(_member_folder(folder, meta)))
               for meta in config["members"]]
    with model_file_errors(file):
        config["classes"] = decode_classes(config["classes"])
        _check_vote(config, members)
    return config, members


def _member_folder(folder: Path, meta: dict[str, str]) -> Path:
    file = folder / ENSEMBLE_FILE
    if meta["estimator"] != CLASSIFIER or not _SAFE_FOLDER.fullmatch(meta["folder"]):
        raise ModelFileError(file, f"it lists a member {meta} that cannot be loaded (only "
                             f"{CLASSIFIER} members, each in a sub-folder of the ensemble)")
    if not (folder / meta["folder"]).is_dir():
        raise ModelFileError(file, f"its member {meta['name']!r} should be in the sub-folder "
                             f"{meta['folder']!r}, which is missing")
    return folder / meta["folder"]


def _check_vote(config: dict[str, Any], members: list[tuple[str, SavedModel]]) -> None:
    names, n = [name for name, _ in members], len(members)
    if len(set(names)) != n:
        raise InputError(f"its member names {names} are not unique")
    for key in ("weights", "temperatures"):
        if len(config[key]) != n:
            raise InputError(f"it has {len(config[key])} {key} for {n} members")
    if sum(config["weights"]) <= 0:  # the schema makes them finite and non-negative
        raise InputError(f"its weights {config['weights']} are all 0: the vote needs a "
                         "positive weight")
    if any(temperature <= 0 for temperature in config["temperatures"]):
        raise InputError(f"its temperatures {config['temperatures']} are not all finite and "
                         "positive")
    classes = config["classes"]
    for name, member in members:
        if not np.array_equal(member.config["classes"], classes):
            raise InputError(f"its classes {classes.tolist()} differ from member {name!r}'s "
                             f"{member.config['classes'].tolist()}")
    if len(config["class_prior"]) != len(classes):
        raise InputError(f"class_prior must hold one number per class ({len(classes)})")


# ------------------------------------------------------------------------------ writing
def is_saved_model(path: str | os.PathLike) -> bool:
    """Whether the folder ``path`` holds a model saved by wjsentiment (its ``config.json``
    or ``ensemble.json`` says so), or nothing: what ``save`` may replace.

    Examples
    --------
    >>> import tempfile
    >>> is_saved_model(tempfile.mkdtemp())  # an empty folder
    True
    """
    folder = Path(path)
    if not any(folder.iterdir()):
        return True
    for name, kind in ((CONFIG_FILE, CLASSIFIER), (ENSEMBLE_FILE, ENSEMBLE)):
        with contextlib.suppress(OSError, ValueError, RecursionError):
            config = json.loads((folder / name).read_bytes())
            if isinstance(config, dict) and config.get("estimator") == kind \
                    and "format_version" in config:
                return True
    return False


def _as_json(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """``config`` stamped with the format and kind, as plain JSON data, and checked against
    the schema: a non-finite number is refused before anything is written."""
    config = {"format_version": FORMAT_VERSION, "estimator": kind, **config,
              "classes": encode_classes(np.asarray(config["classes"]))}
    if isinstance(config.get("class_weight"), dict):
        config["class_weight"] = {"pairs": [[k, v] for k, v in config["class_weight"].items()]}
    if "history" in config:  # a metric that could not be computed is null (JSON has no NaN)
        config["history"] = [{k: None if isinstance(v, float) and not math.isfinite(v) else v
                              for k, v in entry.items()} for entry in config["history"]]
    data = json.loads(json.dumps(config, default=json_default))
    problem = schema_problem(data, schema(kind, FORMAT_VERSION))
    if problem is not None:
        raise InputError(f"Cannot save this {kind}: {problem}.")
    return data


def _write(folder: Path, name: str, data: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(data, indent=2, allow_nan=False), encoding="utf-8")


def _write_classifier(folder: Path, config: dict[str, Any],
                      tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    _write(folder, CONFIG_FILE, config)
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
              str(folder / WEIGHTS_FILE))
    # safetensors creates its file 0600: give it the mode any new file gets (the umask's)
    os.chmod(folder / WEIGHTS_FILE, stat.S_IMODE((folder / CONFIG_FILE).stat().st_mode))


def save_classifier(path: str | os.PathLike, config: dict[str, Any],
                    tensors: dict[str, torch.Tensor]) -> Path:
    """Write a classifier's state into the folder ``path``, atomically (see
    :func:`~.files.atomic_folder`): ``config`` (what the schema of :mod:`.schemas`
    describes, ``classes`` as an array and ``class_weight`` as the parameter's value) to
    ``config.json`` and ``tensors`` to ``model.safetensors``.

    Raises
    ------
    FileExistsError
        If ``path`` is a file, a symbolic link, or a folder that holds something other than
        a saved model (nothing is written).
    ValueError
        If the state does not fit the schema (a non-finite temperature, say).
    """
    data = _as_json(config, CLASSIFIER)
    with atomic_folder(path, replaceable=is_saved_model, what=_WHAT) as tmp:
        _write_classifier(tmp, data, tensors)
    return Path(path)


def save_ensemble(path: str | os.PathLike, config: dict[str, Any],
                  members: Sequence[tuple[str, dict[str, Any], dict[str, torch.Tensor]]]
                  ) -> Path:
    """Write an ensemble's state into the folder ``path``, atomically: ``config`` (what
    the schema of :mod:`.schemas` describes but ``members``) to ``ensemble.json`` and
    each ``(name, config, tensors)`` of ``members`` into a sub-folder, as
    :func:`save_classifier` would.

    Raises
    ------
    FileExistsError, ValueError
        As :func:`save_classifier`.
    """
    names = [name for name, _, _ in members]
    folders = _member_folders(names)
    data = _as_json({**config, "members": [
        {"name": name, "folder": folder, "estimator": CLASSIFIER}
        for name, folder in zip(names, folders)]}, ENSEMBLE)
    states = [(_as_json(state, CLASSIFIER), tensors) for _, state, tensors in members]
    with atomic_folder(path, replaceable=is_saved_model, what=_WHAT) as tmp:
        for folder, (state, tensors) in zip(folders, states):
            (tmp / folder).mkdir()
            _write_classifier(tmp / folder, state, tensors)
        _write(tmp, ENSEMBLE_FILE, data)
    return Path(path)


def _member_folders(names: list[str]) -> list[str]:
    """A sub-folder name for each member: its name where that is a safe folder name."""
    folders, seen = [], set()
    for i, name in enumerate(names):
        folder = name if _SAFE_FOLDER.fullmatch(name) and name != ENSEMBLE_FILE \
            else f"member_{i}"
        while folder.lower() in seen:
            folder += "_"
        seen.add(folder.lower())
        folders.append(folder)
    return folders
