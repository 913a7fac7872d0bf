"""Writing a file or a folder so that a reader sees the old one or the new one, never a part.

Both are built under a temporary name beside their target, synced to disk, then renamed into
place; both follow the umask like any other file (0644 files and 0755 folders under umask
022). A folder replaces the old one in a single atomic exchange on Linux
(``renameat2(RENAME_EXCHANGE)``), so a process polling the path always finds a whole folder;
elsewhere the old folder is renamed away just before the new one is renamed in.

Temporary names are ``.NAME.wjs-tmp-HOST-PID-RANDOM``. A folder save killed half-way leaves
its temporary folder, which the next save of that folder on the same machine removes once
process PID is gone (:func:`remove_stale_temporaries`). A file write killed half-way leaves
its hidden temporary file, which nothing removes: delete it by hand (an error short of a kill
removes it at once).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["TEMP_MARK", "atomic_file", "atomic_folder", "lock_folder", "open_new_file",
           "remove_stale_temporaries"]

#: What the name of every temporary file or folder of this module holds.
TEMP_MARK = ".wjs-tmp-"


@functools.cache
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:40] or "host"


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{_host()}-{os.getpid()}-"
                          f"{secrets.token_hex(4)}")


def _fsync(path: str | os.PathLike) -> None:
    """Flush a file's content to the disk, or a folder's entries where the system allows it
    (Windows cannot open a folder; some network filesystems refuse)."""
    folder = os.path.isdir(path)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not folder:
            raise


def open_new_file(path: str | os.PathLike, mode: str = "w+b", **open_kwargs: Any) -> IO:
    """Create ``path``, which must not exist, and open it for reading and writing.

    The file gets the mode any new file gets (0644 under umask 022): unlike
    :func:`tempfile.mkstemp`'s 0600, which the rename would carry to the final name.

    Raises
    ------
    FileExistsError
        If ``path`` exists (a symbolic link included: it is not followed).

    Examples
    --------
    >>> import tempfile
    >>> with open_new_file(Path(tempfile.mkdtemp()) / "part", "w+") as fh:
    ...     _ = fh.write("abc"); _ = fh.seek(0); fh.read()
    'abc'
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        return os.fdopen(fd, mode, **open_kwargs)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    Readers never see a half-written file: the data is synced to disk before the rename,
    and on any error the temporary file is removed and ``path`` keeps its old content (a
    process killed meanwhile leaves the temporary file, ``.NAME.wjs-tmp-...``, which is not
    removed later). The file gets the mode any new file gets (0644 under umask 022).

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
    tmp = _temp_name(path)
    handle = open_new_file(tmp, mode, **open_kwargs)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync(path.parent)


def _is_empty_folder(path: Path) -> bool:
    return not any(path.iterdir())


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *,
                  replaceable: Callable[[Path], bool] = _is_empty_folder,
                  what: str = "what this writes") -> Iterator[Path]:
    """Build a folder under a temporary name beside ``path``, then swap it into place.

    The caller writes into the yielded folder. On success every file and folder in it is
    synced to disk and it replaces ``path`` (see the module's notes); on any error it is
    deleted and ``path`` is left as it was.

    Parameters
    ----------
    path : path-like
        Where the folder goes.
    replaceable : callable, optional
        Whether an existing folder at ``path`` may be replaced (default: only an empty one).
    what : str
        What a replaceable folder holds, for the error message.

    Raises
    ------
    FileExistsError
        Before anything is written, if ``path`` is a file, a symbolic link, or a folder that
        is not ``replaceable``.

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
    _check_target(path, replaceable, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _temp_name(path)
    os.mkdir(tmp)  # 0777 less the umask, as any new folder (mkdtemp: 0700)
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                _fsync(os.path.join(folder, name))
            _fsync(folder)
        old = _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_target(path: Path, replaceable: Callable[[Path], bool], what: str) -> None:
    """Refuse to replace anything at ``path`` but a folder ``replaceable`` accepts."""
    where = f"Cannot save to {str(path)!r}"
    if path.is_symlink():
        raise FileExistsError(f"{where}: it is a symbolic link (to {os.readlink(path)!r}). "
                              "Save to the folder itself, or remove the link first.")
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{where}: it is a file, not a folder. Choose another path, or "
                              "remove the file first.")
    if path.is_dir() and not replaceable(path):
        raise FileExistsError(f"{where}: the folder holds something other than {what}, and "
                              "saving would replace it. Choose another path, or empty or "
                              "remove the folder first.")


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """glibc's ``renameat2``, or None where there is none (not Linux, or an old C library).
    (ctypes passes its int and bytes arguments as C ints and strings, and returns an int.)"""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            return ctypes.CDLL(None, use_errno=True).renameat2
    return None


def _swap_into_place(tmp: Path, path: Path) -> Path | None:
    """Put the folder ``tmp`` at ``path``; return where the old folder went, if any.

    The two are exchanged in one atomic step where the system and filesystem can
    (``renameat2``); elsewhere the old folder is renamed away first."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return None
    renameat2 = _renameat2()
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(path),
                     _RENAME_EXCHANGE) == 0:
            return tmp
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), os.fspath(path))
    old = _temp_name(path)
    os.rename(path, old)  # without an atomic exchange, path is missing until the next line
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)  # the old folder back, rather than nothing at path
        raise
    return old


def lock_folder() -> Path:
    """This account's folder for lock files in the system's temporary folder,
    ``wjsentiment-locks-ACCOUNT`` (``ACCOUNT``: the user id), created with mode 0700.

    Locks keep this account's processes apart (downloads into one folder, predictions into
    one file). The temporary folder is shared by every account, so a folder found there is
    used only if it is a real folder (not a symbolic link) that this account owns; a group
    or other permission on it is taken away.

    Raises
    ------
    PermissionError
        If the path is a symbolic link, not a folder, or a folder another account owns:
        someone else put it there; remove it, or set ``TMPDIR`` to a folder of your own.

    Examples
    --------
    >>> import stat
    >>> stat.S_IMODE(lock_folder().stat().st_mode) == 0o700
    True
    """
    getuid = getattr(os, "getuid", None)
    account = getuid() if getuid is not None else re.sub(
        r"[^A-Za-z0-9._-]", "_", os.environ.get("USERNAME", "user"))
    folder = Path(tempfile.gettempdir()) / f"wjsentiment-locks-{account}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    info = os.lstat(folder)
    problem = ("is a symbolic link" if stat.S_ISLNK(info.st_mode) else
               "is not a folder" if not stat.S_ISDIR(info.st_mode) else
               f"belongs to another account (user id {info.st_uid})"
               if getuid is not None and info.st_uid != getuid() else None)
    if problem is not None:
        raise PermissionError(f"{str(folder)!r} {problem}, so wjsentiment will not keep its "
                              "locks there: another account may have made it. Remove it, or "
                              "set TMPDIR to a folder of your own.")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    return folder


def _alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill would end the process there: never guess
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove the temporary folders that saves of ``path`` killed half-way left beside it:
    those of this machine whose process is gone (a save running in another process keeps
    its own)."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}{TEMP_MARK}{_host()}-") + r"(\d+)-[0-9a-f]+")
    with contextlib.suppress(FileNotFoundError), os.scandir(path.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match[1])):
                shutil.rmtree(entry.path, ignore_errors=True)
