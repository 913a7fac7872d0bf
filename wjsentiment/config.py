"""Process-wide settings: the decoded-image cache, the feature cache folder and thread counts.

One place for what used to be four module-level dicts, four environment variables and three
setters. :func:`set_config` changes settings, :func:`get_config` reads them and
:func:`config_context` changes them for the length of a ``with`` block, as scikit-learn's
functions of the same names do for its own settings.

The environment variables give the defaults. They are read once, when a setting is first
needed (so a bad value is reported then, naming the variable, rather than when
``wjsentiment`` is imported):

- ``WJSENTIMENT_CACHE_MEMORY``: ``cache_memory_bytes`` (else a quarter of physical memory, at
  most 16 GiB);
- ``WJSENTIMENT_CACHE_DISK``: ``cache_disk_bytes`` (else 32 GiB);
- ``WJSENTIMENT_CACHE_DIR``: ``cache_dir`` (else None, the system's temporary folder);
- ``WJSENTIMENT_FEATURE_CACHE_DIR``: ``feature_cache_dir`` (else None, features in memory
  only).

**Threads.** Unlike scikit-learn's configuration, these settings are process-wide, not
per-thread: the decoded-image cache and its budgets are shared by every thread of the process,
so a budget that differed between threads would have no meaning. A :func:`config_context` is
therefore seen by every thread while it lasts; use it from one thread at a time (for example
around a whole grid search, not inside its workers). Reading and setting are guarded by a lock.

This module imports only the standard library and :mod:`wjsentiment.exceptions` (which
imports only the standard library): every other module may use it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .exceptions import InputError

__all__ = ["config_context", "get_config", "set_config"]

#: Default memory budget of the decoded-image cache: this share of physical memory...
MEMORY_SHARE = 0.25
#: ...but at most this many bytes.
MEMORY_CAP = 16 * 2**30
#: Default disk budget for decoded images spilled to memory-mapped files.
DISK_DEFAULT = 32 * 2**30
#: Decoding threads of ``"auto"``: every core, but at most this many.
MAX_DECODE_THREADS = 16

#: The environment variable that gives each setting its default.
ENVIRONMENT = {
    "cache_memory_bytes": "WJSENTIMENT_CACHE_MEMORY",
    "cache_disk_bytes": "WJSENTIMENT_CACHE_DISK",
    "cache_dir": "WJSENTIMENT_CACHE_DIR",
    "feature_cache_dir": "WJSENTIMENT_FEATURE_CACHE_DIR",
}


def _is_count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_folder(value: Any) -> bool:
    return value is None or isinstance(value, (str, os.PathLike))


#: What each setting accepts: a test, and the words that say it in an error.
_ALLOWED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "cache_memory_bytes": (lambda value: _is_count(value, 0), "an int >= 0 (bytes)"),
    "cache_disk_bytes": (lambda value: _is_count(value, 0), "an int >= 0 (bytes)"),
    "cache_dir": (_is_folder, "a folder path or None"),
    "feature_cache_dir": (_is_folder, "a folder path or None"),
    "torch_threads": (lambda value: value is None or _is_count(value, 1),
                      "None (leave torch's count) or an int >= 1"),
    "decode_threads": (lambda value: value == "auto" or _is_count(value, 1),
                       "'auto' or an int >= 1"),
}
#: The names of the settings.
SETTINGS = tuple(_ALLOWED)

_UNSET: Any = object()
_LOCK = threading.RLock()
_SETTINGS: dict[str, Any] = {}
#: Called with the names of the settings that changed (the image cache gives back at once
#: what is over a lowered budget).
_LISTENERS: list[Callable[[set[str]], None]] = []


def _env_bytes(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = int(float(value))
    except (ValueError, OverflowError):
        raise InputError(f"{name}={value!r} is not a number of bytes; set it to a number such "
                         "as 4e9, or unset it.") from None
    if number < 0:
        raise InputError(f"{name}={value!r} must be >= 0 bytes.")
    return number


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _defaults() -> dict[str, Any]:
    """The settings a process starts with: the environment's, else the built-in ones."""
    memory = int(min(_physical_memory() * MEMORY_SHARE, MEMORY_CAP))
    return {
        "cache_memory_bytes": _env_bytes(ENVIRONMENT["cache_memory_bytes"], memory),
        "cache_disk_bytes": _env_bytes(ENVIRONMENT["cache_disk_bytes"], DISK_DEFAULT),
        "cache_dir": os.environ.get(ENVIRONMENT["cache_dir"]) or None,
        "feature_cache_dir": os.environ.get(ENVIRONMENT["feature_cache_dir"]) or None,
        "torch_threads": None,
        "decode_threads": "auto",
    }


def _settings() -> dict[str, Any]:
    """The live settings, filled from the environment on first use. Caller holds ``_LOCK``."""
    if not _SETTINGS:
        _SETTINGS.update(_defaults())
    return _SETTINGS


def _checked(name: str, value: Any) -> Any:
    """``value`` as the setting ``name`` keeps it, or an InputError saying what is allowed."""
    accepts, allowed = _ALLOWED[name]
    if not accepts(value):
        raise InputError(f"{name} must be {allowed}, got {value!r}.")
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def get_config() -> dict[str, Any]:
    """The current settings, as a new dict (changing it changes nothing).

    Returns
    -------
    dict
        ``cache_memory_bytes``, ``cache_disk_bytes``, ``cache_dir``, ``feature_cache_dir``,
        ``torch_threads`` and ``decode_threads``; see :func:`set_config`.

    Examples
    --------
    >>> from wjsentiment import get_config
    >>> sorted(get_config())  # doctest: +NORMALIZE_WHITESPACE
    ['cache_dir', 'cache_disk_bytes', 'cache_memory_bytes', 'decode_threads',
     'feature_cache_dir', 'torch_threads']
    """
    with _LOCK:
        return dict(_settings())


def set_config(
    *,
    cache_memory_bytes: int = _UNSET,
    cache_disk_bytes: int = _UNSET,
    cache_dir: str | os.PathLike | None = _UNSET,
    feature_cache_dir: str | os.PathLike | None = _UNSET,
    torch_threads: int | None = _UNSET,
    decode_threads: int | str = _UNSET,
) -> None:
    """Change process-wide settings; those not passed keep their values.

    Parameters
    ----------
    cache_memory_bytes : int, optional
        RAM for decoded images kept between calls, shared by every image size. Lowering it
        gives back at once what is over it. Default: ``WJSENTIMENT_CACHE_MEMORY``, else a
        quarter of physical memory (at most 16 GiB).
    cache_disk_bytes : int, optional
        Disk for decoded images spilled to memory-mapped files in ``cache_dir``. Default:
        ``WJSENTIMENT_CACHE_DISK``, else 32 GiB.
    cache_dir : path-like or None, optional
        Folder of the spilled images; None: the system's temporary folder. Default:
        ``WJSENTIMENT_CACHE_DIR``.
    feature_cache_dir : path-like or None, optional
        Folder where frozen-backbone features (``finetune="head"``) are kept so that later
        processes find them; None: memory only. Default: ``WJSENTIMENT_FEATURE_CACHE_DIR``.
    torch_threads : int or None, optional
        torch's intra-op threads while an estimator trains or predicts on the CPU; None
        (the default): leave torch's own setting.
    decode_threads : int or "auto", optional
        Image decoding threads of estimators whose ``num_workers`` is "auto". "auto" (the
        default): every core, at most 16.

    Raises
    ------
    InputError
        For a value of the wrong kind or out of range (a ValueError); nothing is changed
        then.

    Examples
    --------
    >>> from wjsentiment import get_config, set_config
    >>> before = get_config()["decode_threads"]
    >>> set_config(decode_threads=2)
    >>> get_config()["decode_threads"]
    2
    >>> set_config(decode_threads=before)
    """
    given = {name: value for name, value in locals().items() if value is not _UNSET}
    _update(given)


def _update(given: dict[str, Any]) -> dict[str, Any]:
    """Apply ``given`` (all checked first) and tell the listeners; return the old values."""
    checked = {name: _checked(name, value) for name, value in given.items()}
    with _LOCK:
        settings = _settings()
        old = {name: settings[name] for name in checked}
        settings.update(checked)
        changed = {name for name in checked if checked[name] != old[name]}
        listeners = list(_LISTENERS)
    if changed:
        for listener in listeners:
            listener(changed)
    return old


@contextlib.contextmanager
def config_context(**settings: Any) -> Iterator[None]:
    """Change settings for the length of a ``with`` block, then restore them.

    Takes the parameters of :func:`set_config`. The settings are process-wide (see the
    module's notes on threads): every thread sees them while the block runs.

    Raises
    ------
    TypeError
        For a name that is not a setting.
    InputError
        For a value of the wrong kind or out of range (a ValueError; nothing is changed).

    Examples
    --------
    >>> from wjsentiment import config_context, get_config
    >>> with config_context(torch_threads=1):
    ...     get_config()["torch_threads"]
    1
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"config_context() got unknown settings {unknown}; the settings are "
                        f"{list(SETTINGS)}.")
    old = _update(settings)
    try:
        yield
    finally:
        _update(old)


def on_change(listener: Callable[[set[str]], None]) -> None:
    """Call ``listener`` with the names of the settings whenever some of them change.

    For the modules that act on a setting at once, such as the image cache giving back what
    is over a lowered budget.
    """
    with _LOCK:
        _LISTENERS.append(listener)


def decode_threads() -> int:
    """The number of decoding threads ``decode_threads`` stands for ("auto": the cores, at
    most :data:`MAX_DECODE_THREADS`).

    Examples
    --------
    >>> decode_threads() >= 1
    True
    """
    value = get_config()["decode_threads"]
    if value == "auto":
        return max(1, min(MAX_DECODE_THREADS, os.cpu_count() or 1))
    return int(value)
