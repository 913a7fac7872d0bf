"""Download many images over HTTP(S), robustly and resumably.

Only the standard library is used for networking (:mod:`urllib.request` and a
:class:`~concurrent.futures.ThreadPoolExecutor`). Every body is streamed to a
temporary file in the target directory, checked to decode as an image, and only
then moved to its final name with :func:`os.replace`, so the directory never holds
a partial image, even if the process is killed midway.

Several runs may share a directory, in one process or in several. Each run names its
temporary files with its own run id and holds an advisory lock (:func:`fcntl.flock`)
on each while writing it; a run removes only its own temporary files, plus those that
are older than :data:`STALE_TEMP_AGE` and locked by nobody (left by a killed run). A
run that finds another run writing one of its files waits for it instead of fetching
the same image twice, and the failures manifest is merged, not overwritten.

This module deliberately depends only on the standard library, Pillow and tqdm.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import email.utils
import hashlib
import http
import http.client
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image
from tqdm import tqdm

from wjsentiment.persistence import atomic_file

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so only a file's age guards other runs
    fcntl = None  # type: ignore[assignment]

__all__ = ["DownloadReport", "default_filename", "download_images"]

#: Base delay in seconds of the exponential backoff between retries: attempt ``k``
#: (counted from 0) waits about ``BACKOFF_BASE * 2**k`` seconds, with jitter.
BACKOFF_BASE: float = 0.5

#: Longest wait in seconds before a retry: caps both a server's ``Retry-After`` and the
#: exponential backoff.
MAX_RETRY_DELAY: float = 60.0

#: Name of the failures manifest written beside the images (CSV: url, filename, reason).
FAILURES_MANIFEST: str = "_failures.csv"

#: Suffix of the temporary files that hold a body while it is being downloaded.
TEMP_SUFFIX: str = ".wjs-partial"

#: Age in seconds (since its last write) past which a temporary file that no live run holds
#: locked is taken as left behind by a killed run and removed when a run starts. Where
#: advisory locks are not available, age alone decides.
STALE_TEMP_AGE: float = 3600.0

#: Substrings of a final (post-redirect) URL that mark a "photo not available" placeholder
#: image; such responses are refused rather than stored as if they were the photo.
PLACEHOLDER_URL_MARKERS: tuple[str, ...] = ("photo_unavailable",)

_MANIFEST_HEADER = ("url", "filename", "reason")
_CHUNK_SIZE = 64 * 1024
_USER_AGENT = "wjsentiment-downloader/1 (+python urllib)"
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_DIGEST_CHARS = 16  # 64 bits of SHA-256 in a default file name
_MAX_STEM_CHARS = 100
_MAX_EXT_CHARS = 16
_POLL_INTERVAL = 0.05  # seconds between looks at another run's file while waiting for it


@dataclass
class DownloadReport:
    """Outcome of :func:`download_images`.

    Parameters
    ----------
    ok : list of str, default=[]
        URLs downloaded by this run (now on disk).
    failed : dict of str to str, default={}
        URL -> reason, for every URL that could not be downloaded.
    skipped : list of str, default=[]
        URLs whose file was already present, so nothing was fetched.
    directory : str, default=""
        The directory the images were written to.

    Examples
    --------
    >>> report = DownloadReport(ok=["http://a/1.jpg"], failed={"http://a/2.jpg": "HTTP 404"})
    >>> report.n_failed
    1
    >>> print(report.summary())
    1 downloaded, 0 already present, 1 failed (of 2)
    """

    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    directory: str = ""

    @property
    def n_ok(self) -> int:
        """Number of URLs downloaded by this run."""
        return len(self.ok)

    @property
    def n_failed(self) -> int:
        """Number of URLs that failed."""
        return len(self.failed)

    @property
    def n_skipped(self) -> int:
        """Number of URLs already on disk before this run."""
        return len(self.skipped)

    def summary(self) -> str:
        """Return a one-line summary of the counts.

        Returns
        -------
        str
            For example ``"3 downloaded, 2 already present, 1 failed (of 6)"``.

        Examples
        --------
        >>> DownloadReport(skipped=["u"]).summary()
        '0 downloaded, 1 already present, 0 failed (of 1)'
        """
        total = self.n_ok + self.n_skipped + self.n_failed
        return (
            f"{self.n_ok} downloaded, {self.n_skipped} already present, "
            f"{self.n_failed} failed (of {total})"
        )

    def __repr__(self) -> str:
        lines = [f"DownloadReport({self.summary()}"]
        if self.directory:
            lines[0] += f", directory={self.directory!r}"
        lines[0] += ")"
        for url, reason in list(self.failed.items())[:5]:
            lines.append(f"  failed {url}: {reason}")
        if self.n_failed > 5:
            lines.append(f"  ... and {self.n_failed - 5} more failures")
        return "\n".join(lines)


class _Refused(Exception):
    """A response that will not become a file and must not be retried."""


class _Retryable(Exception):
    """A transient failure worth another attempt, after ``retry_after`` seconds if given."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Stopped(Exception):
    """The run was interrupted; abandon this URL quietly."""


def _is_reserved(name: str) -> bool:
    """Whether ``name`` is one the downloader uses for its own files."""
    return name == FAILURES_MANIFEST or name.endswith(TEMP_SUFFIX)


def default_filename(url: str) -> str:
    """Return the file name :func:`download_images` gives ``url`` when no names are passed.

    The name is a function of the URL alone: a safe stem from the last component of the
    URL's path, a dash, 16 hex digits of the SHA-256 of the whole URL (query included),
    then the path's extension. Two different URLs therefore never share a name, within a
    call or across calls, so a file on disk is only ever taken as present for the URL it
    was downloaded from.

    Parameters
    ----------
    url : str
        The URL.

    Returns
    -------
    str
        A plain file name of ASCII letters, digits, ``.``, ``_`` and ``-`` that does not
        start with a dot.

    Examples
    --------
    >>> default_filename("https://example.com/photos/cat%20pic.jpg?size=large")
    'cat_pic-75f069727bafef0d.jpg'
    """
    path = urllib.parse.urlsplit(url).path
    last = _SAFE_CHARS.sub("_", urllib.parse.unquote(path.rsplit("/", 1)[-1])).lstrip(".")
    stem, dot, ext = last.rpartition(".")
    if not dot:
        stem, ext = last, ""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]
    name = f"{stem[:_MAX_STEM_CHARS]}-{digest}" if stem else digest
    with_ext = f"{name}.{ext[:_MAX_EXT_CHARS]}"
    return with_ext if ext and not _is_reserved(with_ext) else name


def _check_filename(name: object) -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise ValueError(f"filenames contains an invalid file name {name!r}; use plain names.")
    if "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(
            f"filenames contains {name!r}, which has a path separator; pass plain file "
            "names and put the folder in `directory`."
        )
    if _is_reserved(name):
        raise ValueError(f"filenames contains the reserved name {name!r}; choose another name.")
    return name


def _plan(urls: Sequence[str], filenames: Sequence[str] | None) -> list[tuple[str, str]]:
    """Validate the inputs and return the unique (url, filename) pairs, in order."""
    if isinstance(urls, str):
        raise ValueError("urls must be a sequence of URL strings, not a single string.")
    urls = list(urls)
    for url in urls:
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"urls contains {url!r}, which is not an http(s) URL.")
    if filenames is None:
        names = [default_filename(url) for url in urls]
    else:
        if isinstance(filenames, str):
            raise ValueError("filenames must be a sequence of names, one per URL, not a string.")
        names = [_check_filename(n) for n in filenames]
        if len(names) != len(urls):
            raise ValueError(
                f"filenames has {len(names)} entries but urls has {len(urls)}; "
                "pass exactly one file name per URL."
            )
    pairs = list(dict.fromkeys(zip(urls, names, strict=True)))
    seen_names: dict[str, str] = {}
    seen_urls: dict[str, str] = {}
    for url, name in pairs:
        if name in seen_names:
            raise ValueError(
                f"filenames are not unique: {name!r} is given for both {seen_names[name]!r} "
                f"and {url!r}; every URL needs its own file name."
            )
        if url in seen_urls:
            raise ValueError(
                f"urls contains {url!r} twice with different file names ({seen_urls[url]!r}, "
                f"{name!r}); pass each URL once."
            )
        seen_names[name] = url
        seen_urls[url] = name
    return pairs


def _flock(fd: int, *, wait: bool) -> bool | None:
    """Take an exclusive advisory lock on ``fd``.

    Returns ``True`` once taken, ``False`` if someone else holds it (only when ``wait`` is
    false), and ``None`` where this platform or file system has no such locks.
    """
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK: the file system does not support locks
        return None
    return True


@contextlib.contextmanager
def _probe_lock(path: str | os.PathLike[str]) -> Iterator[bool | None]:
    """Try to lock ``path`` without waiting; yield what :func:`_flock` answered.

    The lock, if taken, is held until the block ends, so a file found free can be
    removed before anyone else locks it. A file that vanished yields ``None``; so does
    any file where there are no locks (it is not even opened: on Windows an open handle
    would stop its writer from renaming it).
    """
    if fcntl is None:
        yield None
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        yield _flock(fd, wait=False)
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``directory`` (where the platform has them)."""
    fd = os.open(directory, os.O_RDONLY) if fcntl is not None else None
    try:
        if fd is not None:
            _flock(fd, wait=True)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _temp_path(target: Path, run_id: str) -> Path:
    """The temporary file of ``target`` that belongs to run ``run_id``."""
    return target.with_name(f".{target.name}.{run_id}{TEMP_SUFFIX}")


def _target_of(temp_name: str) -> str:
    """The final file name a temporary file name stands for (inverse of :func:`_temp_path`)."""
    return temp_name[1 : -len(TEMP_SUFFIX)].rsplit(".", 1)[0]


def _survey_temp_files(directory: Path) -> dict[str, list[Path]]:
    """Remove abandoned temporary files; return those other runs are writing, by target name.

    A temporary file is abandoned when nobody holds its lock and it was last written more
    than :data:`STALE_TEMP_AGE` seconds ago. A young file is never removed, even unlocked:
    its writer may have created it a moment ago, or be a run on a platform without locks.
    """
    in_progress: dict[str, list[Path]] = {}
    now = time.time()
    for entry in os.scandir(directory):
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        with _probe_lock(entry.path) as free:
            if free is False:
                in_progress.setdefault(_target_of(entry.name), []).append(Path(entry.path))
            elif free:
                _remove_if_stale(entry.path, now)  # while holding its lock
        if free is None:
            _remove_if_stale(entry.path, now)  # no lock to hold: age alone decides
    return in_progress


def _remove_if_stale(path: str, now: float) -> None:
    """Remove ``path`` if it was last written more than :data:`STALE_TEMP_AGE` ago."""
    with contextlib.suppress(FileNotFoundError):
        if now - os.stat(path).st_mtime > STALE_TEMP_AGE:
            os.remove(path)


def _remove_own_temp_files(directory: Path, run_id: str) -> None:
    """Remove every temporary file of run ``run_id`` (and no other run's)."""
    suffix = f".{run_id}{TEMP_SUFFIX}"
    for entry in os.scandir(directory):
        if entry.name.endswith(suffix):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)


def _wait_for_other_writers(paths: list[Path], *, patience: float, stop: threading.Event) -> None:
    """Wait while another run writes one of ``paths``: it holds the lock and makes progress.

    A writer that adds no byte for ``patience`` seconds is not waited for any longer; the
    caller then fetches the file itself (both writes are atomic, so that is safe).
    """
    for path in paths:
        last_size, last_change = -1, time.monotonic()
        while not stop.is_set():
            with _probe_lock(path) as free:
                if free is not False:
                    break  # finished, failed, or died
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                break
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > patience:
                break
            stop.wait(_POLL_INTERVAL)


def _open_url(url: str, timeout: float) -> http.client.HTTPResponse:
    """Open ``url`` (following redirects) and return the response."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)  # schemes checked in _plan


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if usable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # unparseable: fall back to the backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _http_failure(exc: urllib.error.HTTPError) -> Exception:
    """The failure an HTTP error answer stands for: 429 and 5xx are retried, the rest not."""
    reason = f"HTTP {exc.code} {exc.reason}"
    if exc.code == http.HTTPStatus.TOO_MANY_REQUESTS or exc.code >= 500:
        header = exc.headers.get("Retry-After") if exc.headers else None
        return _Retryable(reason, _retry_after_seconds(header))
    return _Refused(reason)


def _retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (from 0), at most :data:`MAX_RETRY_DELAY`.

    A server's ``Retry-After`` is honoured; otherwise the delay grows exponentially from
    :data:`BACKOFF_BASE`, with jitter so that many clients do not retry in step.
    """
    if retry_after is None:
        retry_after = BACKOFF_BASE * (2**attempt) * (0.5 + random.random())
    return min(retry_after, MAX_RETRY_DELAY)


def _verify_image(path: str) -> None:
    """Raise :class:`_Refused` unless ``path`` fully decodes as an image.

    A file that is gone (removed by someone else) raises :class:`_Retryable`: it says
    nothing about the image.
    """
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except FileNotFoundError:
        raise _Retryable("temporary file vanished before it was checked") from None
    except Exception as exc:  # Pillow raises many types for bad data
        raise _Refused(f"not a valid image ({type(exc).__name__}: {exc})") from None


def _stream_body(
    response: http.client.HTTPResponse, fh: BinaryIO, *, max_bytes: int, stop: threading.Event
) -> int:
    """Copy the body of ``response`` into ``fh``; return the number of bytes."""
    received = 0
    while True:
        if stop.is_set():
            raise _Stopped()
        chunk = response.read1(_CHUNK_SIZE)  # returns as soon as data arrives
        if not chunk:
            return received
        received += len(chunk)
        if received > max_bytes:
            raise _Refused(f"body is over max_bytes={max_bytes}")
        fh.write(chunk)


def _fetch_one(
    url: str,
    target: Path,
    *,
    run_id: str,
    timeout: float,
    max_bytes: int,
    stop: threading.Event,
) -> None:
    """Download ``url`` once to ``target`` (atomically); raise on any failure.

    The temporary file stays locked from its creation until it has been renamed to
    ``target``, so other runs see it as alive for as long as it exists. This is why it is
    not :func:`wjsentiment.persistence.atomic_file`: the temporary file must carry this
    run's id in its name and hold a lock that other runs can probe, and it is verified as
    an image before the rename.
    """
    tmp = _temp_path(target, run_id)
    fh: BinaryIO | None = None
    try:
        try:
            response = _open_url(url, timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _http_failure(exc) from None
        with response:
            final_url = response.geturl() or url
            if any(marker in final_url for marker in PLACEHOLDER_URL_MARKERS):
                raise _Refused(f"redirected to a placeholder image ({final_url})")
            length = response.headers.get("Content-Length")
            expected: int | None = None
            if length is not None and length.strip().isdigit():
                expected = int(length)
                if expected > max_bytes:
                    raise _Refused(f"body of {expected} bytes is over max_bytes={max_bytes}")
            fh = open(tmp, "wb")  # held open, and locked, until the rename
            locked = _flock(fh.fileno(), wait=True)
            received = _stream_body(response, fh, max_bytes=max_bytes, stop=stop)
        fh.flush()
        if not locked:
            fh.close()  # no lock to hold, and Windows cannot rename an open file
        if expected is not None and received < expected:
            raise _Retryable(f"body truncated ({received} of {expected} bytes)")
        if received == 0:
            raise _Refused("empty body")
        _verify_image(str(tmp))
        try:
            os.replace(tmp, target)
        except FileNotFoundError:
            raise _Retryable("temporary file vanished before it was moved into place") from None
    except (_Refused, _Retryable, _Stopped):
        raise
    except TimeoutError as exc:
        raise _Retryable(f"timed out ({exc})") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Retryable(f"timed out ({exc.reason})") from None
        raise _Retryable(f"connection error ({exc.reason})") from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise _Retryable(f"connection error ({type(exc).__name__}: {exc})") from None
    finally:
        if fh is not None:
            fh.close()  # releases the lock
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _fetch_with_retries(
    url: str,
    target: Path,
    *,
    run_id: str,
    timeout: float,
    retries: int,
    max_bytes: int,
    stop: threading.Event,
) -> str | None:
    """Fetch ``url`` with retries; return ``None`` on success, else the failure reason."""
    reason = "not attempted"
    for attempt in range(retries + 1):
        if stop.is_set():
            return "interrupted"
        try:
            _fetch_one(
                url, target, run_id=run_id, timeout=timeout, max_bytes=max_bytes, stop=stop
            )
            return None
        except _Stopped:
            return "interrupted"
        except _Refused as exc:
            return str(exc)
        except _Retryable as exc:
            reason, retry_after = str(exc), exc.retry_after
        except Exception as exc:  # no single URL may stop the run
            return f"{type(exc).__name__}: {exc}"
        except BaseException:  # KeyboardInterrupt, SystemExit: stop the other workers too
            stop.set()
            raise
        if attempt < retries and stop.wait(_retry_delay(attempt, retry_after)):
            return "interrupted"
    return f"{reason}; gave up after {retries + 1} attempts"


# What became of one URL: downloaded now, found on disk, or failed with a reason.
_OK, _PRESENT, _FAILED = "ok", "present", "failed"


def _download(
    url: str,
    target: Path,
    *,
    others: list[Path],
    timeout: float,
    stop: threading.Event,
    **fetch_kwargs: object,
) -> tuple[str, str | None]:
    """Get one URL unless it is on disk: wait for other runs writing it, then fetch it.

    Returns ``(_OK, None)``, ``(_PRESENT, None)`` or ``(_FAILED, reason)``.
    """
    if others:
        _wait_for_other_writers(others, patience=timeout, stop=stop)
    if target.is_file():  # another run finished it since this run started
        return _PRESENT, None
    reason = _fetch_with_retries(url, target, timeout=timeout, stop=stop, **fetch_kwargs)
    return (_OK, None) if reason is None else (_FAILED, reason)


def _read_failures(path: Path) -> list[tuple[str, str, str]]:
    """The rows of an existing failures manifest (none if there is no file)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        return []
    if not rows:
        return []
    if tuple(rows[0]) != _MANIFEST_HEADER or any(len(row) != 3 for row in rows[1:]):
        warnings.warn(
            f"{path} is not a failures manifest with columns {', '.join(_MANIFEST_HEADER)}; "
            "it is replaced by this run's failures.",
            stacklevel=4,
        )
        return []
    return [(url, name, reason) for url, name, reason in rows[1:]]


def _update_failures(
    directory: Path, plan: list[tuple[str, str]], failures: list[tuple[str, str, str]]
) -> None:
    """Merge this run's outcome into the failures manifest (url, filename, reason).

    Rows of this run's (url, filename) pairs are replaced: a pair now on disk leaves the
    file, a pair that failed again gets its new reason. Rows of other runs stay. The merge
    holds the directory's lock, so concurrent runs do not lose each other's rows.
    """
    path = directory / FAILURES_MANIFEST
    settled = set(plan)
    with _directory_lock(directory):
        kept = [row for row in _read_failures(path) if (row[0], row[1]) not in settled]
        with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(_MANIFEST_HEADER)
            writer.writerows(kept + failures)


def download_images(
    urls: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    filenames: Sequence[str] | None = None,
    n_jobs: int = 16,
    timeout: float = 10.0,
    retries: int = 3,
    max_bytes: int = 20_000_000,
    verbose: int = 1,
) -> DownloadReport:
    """Download images concurrently into a directory, skipping those already there.

    Each body is streamed to a temporary file in ``directory``, checked to decode as
    an image (so HTML error pages and truncated files are refused), then renamed to
    its final name with :func:`os.replace`. A file therefore only ever appears
    complete.

    Timeouts, connection errors, HTTP 5xx and HTTP 429 (too many requests) are retried:
    after the number of seconds a ``Retry-After`` header asks for (seconds or an HTTP
    date), otherwise with exponential backoff and jitter, never longer than
    ``MAX_RETRY_DELAY`` seconds. Other HTTP 4xx answers are not retried. No failing URL
    stops the run: every failure is recorded with its reason in the report and in
    ``directory/_failures.csv``, which is merged with what earlier or concurrent runs
    recorded there (a URL that is now on disk leaves it).

    Several calls may write into one directory at the same time. Each run's temporary
    files carry its own run id and are locked while written; a run removes only its own,
    plus those last written more than ``STALE_TEMP_AGE`` seconds ago that nobody holds
    locked, which a killed run left behind. A URL that another run is downloading right
    now is waited for and then reported as already present.

    Parameters
    ----------
    urls : sequence of str
        The http(s) URLs to fetch. Redirects are followed.
    directory : str or path-like
        Where to write the images; created if needed.
    filenames : sequence of str, optional
        One plain, unique file name per URL. By default each URL gets the name
        :func:`default_filename` gives it: the last component of its path with unsafe
        characters replaced by ``_``, a dash and 16 hex digits of the URL's hash. The name
        depends on the URL alone, so a file on disk is never taken for another URL's. (In
        version 0.1.0 the default was the bare last component; files saved under those
        names are not recognised, since they cannot be told apart from another URL's, and
        are downloaded again under the new names. The old files are left untouched.)
    n_jobs : int, default=16
        Maximum number of downloads in flight at once.
    timeout : float, default=10.0
        Socket timeout in seconds for connecting and for each read; also how long a
        stalled download of another run is waited for.
    retries : int, default=3
        Extra attempts after the first for transient failures.
    max_bytes : int, default=20_000_000
        Bodies larger than this (by ``Content-Length`` or as counted while
        streaming) are refused.
    verbose : int, default=1
        ``0`` is silent; ``1`` or more shows a progress bar.

    Returns
    -------
    DownloadReport
        ``ok`` (downloaded now), ``skipped`` (already present) and ``failed``
        (URL -> reason).

    Raises
    ------
    ValueError
        If ``n_jobs``, ``timeout``, ``retries`` or ``max_bytes`` is out of range, if a
        URL is not http(s), or if ``filenames`` does not give one unique plain name per
        URL.
    KeyboardInterrupt
        Re-raised after in-flight downloads are abandoned and their temporary files
        removed; files already completed stay, and a later call resumes.

    Examples
    --------
    Nothing is fetched when there is nothing to do:

    >>> import tempfile
    >>> download_images([], tempfile.mkdtemp(), verbose=0)  # doctest: +ELLIPSIS
    DownloadReport(0 downloaded, 0 already present, 0 failed (of 0), directory=...)
    """
    _check_settings(n_jobs, retries, timeout, max_bytes)
    plan = _plan(urls, filenames)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    report = DownloadReport(directory=str(directory))
    todo = []
    for url, name in plan:
        if (directory / name).is_file():
            report.skipped.append(url)
        else:
            todo.append((url, name))
    settings = {"timeout": float(timeout), "retries": retries, "max_bytes": max_bytes}
    failures = _run_downloads(todo, directory, report, n_jobs=n_jobs, verbose=verbose,
                              total=len(plan), settings=settings)
    # Report in input order, whatever order the downloads finished in.
    order = {url: i for i, (url, _) in enumerate(plan)}
    report.ok.sort(key=order.__getitem__)
    report.skipped.sort(key=order.__getitem__)
    report.failed = dict(sorted(report.failed.items(), key=lambda item: order[item[0]]))
    failures.sort(key=lambda row: order[row[0]])
    _update_failures(directory, plan, failures)
    return report


def _check_settings(n_jobs: int, retries: int, timeout: float, max_bytes: int) -> None:
    """Refuse out-of-range settings of :func:`download_images` with a clear error."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be an integer >= 1, got {n_jobs!r}.")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}.")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be an integer >= 1, got {max_bytes!r}.")


def _run_downloads(todo: list[tuple[str, str]], directory: Path, report: DownloadReport, *,
                   n_jobs: int, verbose: int, total: int,
                   settings: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Fetch ``todo`` in ``n_jobs`` threads into ``report``; return the failures.

    On an interruption, in-flight downloads are abandoned and this run's temporary files
    removed before the exception goes on.
    """
    run_id = uuid.uuid4().hex[:12]
    in_progress = _survey_temp_files(directory)
    stop = threading.Event()
    failures: list[tuple[str, str, str]] = []
    with tqdm(total=total, initial=len(report.skipped), desc="Downloading images", unit="img",
              disable=not verbose) as bar:
        executor = cf.ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="wjs-download")
        try:
            futures = {
                executor.submit(_download, url, directory / name,
                                others=in_progress.get(name, []), run_id=run_id, stop=stop,
                                **settings): (url, name)
                for url, name in todo
            }
            pending = set(futures)
            while pending:
                # A short wait keeps the main thread responsive to Ctrl-C.
                done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    _record(report, failures, futures[future], *future.result())
                    bar.update(1)
                    if report.failed:
                        bar.set_postfix(failed=len(report.failed), refresh=False)
        except BaseException:
            stop.set()
            executor.shutdown(wait=True, cancel_futures=True)
            _remove_own_temp_files(directory, run_id)
            raise
        executor.shutdown(wait=True)
    return failures


def _record(report: DownloadReport, failures: list[tuple[str, str, str]],
            job: tuple[str, str], outcome: str, reason: str) -> None:
    """Add the outcome of one download to ``report`` (and ``failures``)."""
    url, name = job
    if outcome == _OK:
        report.ok.append(url)
    elif outcome == _PRESENT:
        report.skipped.append(url)
    else:
        report.failed[url] = reason
        failures.append((url, name, reason))
