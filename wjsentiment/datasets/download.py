"""Download many images over HTTP(S), robustly and resumably.

The field's parts do the work: urllib3's :class:`~urllib3.PoolManager` fetches (redirects
followed, http(s) only), its :class:`~urllib3.util.Retry` decides what is retried, how long to
back off and how to read ``Retry-After``, and :mod:`filelock` keeps concurrent runs apart.
Every body is streamed to a temporary file in the target directory, checked to be an image
that training will accept (:func:`wjsentiment.images.decode.verify_image_file`), and only then
renamed to its final name, so the directory never holds a partial image, even if the process
is killed midway.

Several runs may share a directory, in one process or in several on one machine. A run fetches
a file only while it holds that file's lock and after looking again whether it is on disk, so
a URL that another run is fetching is waited for and then counted as present, never fetched
twice. The failures manifest is merged under its own lock, not overwritten. The locks live in
the system's temporary folder, so the image folder holds only images and the manifest.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import hashlib
import math
import os
import re
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import urllib3
from filelock import FileLock, Timeout
from tqdm import tqdm
from urllib3.exceptions import HTTPError, LocationValueError, MaxRetryError, ResponseError
from urllib3.util import Retry

from wjsentiment.exceptions import DownloadWarning, InputError, warn
from wjsentiment.images.decode import BadImageError, verify_image_file
from wjsentiment.persistence import atomic_file, lock_folder, open_new_file

__all__ = ["DownloadReport", "default_filename", "download_images"]

#: Back-off factor in seconds between retries: urllib3's :class:`~urllib3.util.Retry` retries
#: once at once, then waits ``BACKOFF_BASE * 2**(k - 1)`` seconds before retry ``k`` (plus up to
#: ``BACKOFF_BASE`` of jitter).
BACKOFF_BASE: float = 0.5

#: Longest wait in seconds before a retry: caps both a server's ``Retry-After`` and the back-off.
MAX_RETRY_DELAY: float = 60.0

#: A file's deadline, when none is given, in multiples of ``timeout``.
DEADLINE_TIMEOUTS: float = 10.0

#: Name of the failures manifest written beside the images (CSV: url, filename, reason).
FAILURES_MANIFEST: str = "_failures.csv"

#: Suffix of the temporary files that hold a body while it is being downloaded.
TEMP_SUFFIX: str = ".wjs-partial"

#: Age in seconds (since its last write) past which a temporary file whose image nobody holds
#: locked is taken as left behind by a killed run, and removed when a run starts.
STALE_TEMP_AGE: float = 3600.0

#: Substrings of a final (post-redirect) URL that mark a "photo not available" placeholder
#: image; such responses are refused rather than stored as if they were the photo.
PLACEHOLDER_URL_MARKERS: tuple[str, ...] = ("photo_unavailable",)

#: HTTP answers that are retried (with or without ``Retry-After``): too many requests, 5xx.
RETRY_STATUSES: frozenset[int] = frozenset({429, *range(500, 600)})

MAX_REDIRECTS = 10
_MANIFEST_HEADER = ("url", "filename", "reason")
_CHUNK_SIZE = 64 * 1024
_USER_AGENT = "wjsentiment-downloader/2 (+urllib3)"
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


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
        URLs whose file was already present (or another run fetched it meanwhile).
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
        """Number of URLs already on disk."""
        return len(self.skipped)

    def summary(self) -> str:
        """Return a one-line summary of the counts.

        Examples
        --------
        >>> DownloadReport(skipped=["u"]).summary()
        '0 downloaded, 1 already present, 0 failed (of 1)'
        """
        total = self.n_ok + self.n_skipped + self.n_failed
        return (f"{self.n_ok} downloaded, {self.n_skipped} already present, "
                f"{self.n_failed} failed (of {total})")

    def __repr__(self) -> str:
        head = f"DownloadReport({self.summary()}"
        head += f", directory={self.directory!r})" if self.directory else ")"
        lines = [head] + [f"  failed {url}: {why}" for url, why in list(self.failed.items())[:5]]
        if self.n_failed > 5:
            lines.append(f"  ... and {self.n_failed - 5} more failures")
        return "\n".join(lines)


class _Refused(Exception):
    """A failure that another attempt would not mend (an interruption among them)."""


class _Retryable(Exception):
    """A transient failure worth another attempt; ``response`` may ask when (Retry-After)."""

    def __init__(self, reason: str, response: urllib3.BaseHTTPResponse | None = None) -> None:
        super().__init__(reason)
        self.response = response


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
    stem, ext = os.path.splitext(last)
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]  # 64 bits
    name = f"{stem[:100]}-{digest}" if stem else digest  # short enough for any file system
    with_ext = f"{name}.{ext[1:17]}"
    return with_ext if ext[1:] and not _is_reserved(with_ext) else name


def _is_reserved(name: str) -> bool:
    """Whether ``name`` is one the downloader uses for its own files."""
    return name == FAILURES_MANIFEST or name.endswith(TEMP_SUFFIX)


def _check_filename(name: object) -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise InputError(f"filenames contains an invalid file name {name!r}; use plain names.")
    if "/" in name or "\\" in name or "\x00" in name:
        raise InputError(f"filenames contains {name!r}, which has a path separator; pass plain "
                         "file names and put the folder in `directory`.")
    if _is_reserved(name):
        raise InputError(f"filenames contains the reserved name {name!r}; choose another name.")
    return name


def _plan(urls: Sequence[str], filenames: Sequence[str] | None) -> list[tuple[str, str]]:
    """Validate the inputs and return the unique (url, filename) pairs, in order."""
    if isinstance(urls, str):
        raise InputError("urls must be a sequence of URL strings, not a single string.")
    urls = list(urls)
    for url in urls:
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise InputError(f"urls contains {url!r}, which is not an http(s) URL.")
    if filenames is None:
        names = [default_filename(url) for url in urls]
    elif isinstance(filenames, str):
        raise InputError("filenames must be a sequence of names, one per URL, not a string.")
    else:
        names = [_check_filename(n) for n in filenames]
        if len(names) != len(urls):
            raise InputError(f"filenames has {len(names)} entries but urls has {len(urls)}; "
                             "pass exactly one file name per URL.")
    pairs = list(dict.fromkeys(zip(urls, names, strict=True)))
    for side, problem in ((1, "filenames are not unique: {!r} is given for {} URLs; every URL "
                              "needs its own file name."),
                          (0, "urls contains {!r} {} times with different file names; pass "
                              "each URL once.")):
        value, count = Counter(pair[side] for pair in pairs).most_common(1)[0] if pairs else ("", 0)
        if count > 1:
            raise InputError(problem.format(value, count))
    return pairs


def _check_settings(n_jobs: int, retries: int, timeout: float, deadline: float | None,
                    max_bytes: int) -> None:
    """Refuse out-of-range settings of :func:`download_images` with a clear error."""
    for name, value, least in (("n_jobs", n_jobs, 1), ("retries", retries, 0),
                               ("max_bytes", max_bytes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{name} must be an integer >= {least}, got {value!r}.")
    for name, value in (("timeout", timeout),
                        ("deadline", timeout if deadline is None else deadline)):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not 0 < value < math.inf):
            raise InputError(f"{name} must be a positive number of seconds, got {value!r}.")


@dataclass(frozen=True)
class _Run:
    """What every download of one run shares."""

    http: urllib3.PoolManager
    retry: Retry
    locks: Path  # the folder of this directory's lock files
    timeout: float
    deadline: float
    max_bytes: int
    stop: threading.Event


def _lock(folder: Path, name: str) -> FileLock:
    """The lock of the file ``name`` of the directory whose locks are in ``folder``."""
    return FileLock(folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock")


def _lock_folder(directory: Path) -> Path:
    """Where the locks of ``directory`` live: a folder, named by the directory's resolved
    path, in this account's lock folder (:func:`~wjsentiment.persistence.lock_folder`)."""
    key = hashlib.sha256(os.fsencode(directory.resolve())).hexdigest()[:32]
    folder = lock_folder() / key
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _download(url: str, target: Path, run: _Run) -> str | None:
    """Get one URL unless its file is on disk; None if it was, else the outcome.

    The file's lock is held from the look at the disk to the rename, so another run that
    wants the same file waits, then finds it. A run holding it longer than a file's deadline
    allows (stopped, say) is not waited for: both fetch, and each write is atomic.
    """
    if run.stop.is_set():
        return "interrupted"
    lock = _lock(run.locks, target.name)
    try:
        held = lock.acquire(timeout=run.deadline + run.timeout, cancel_check=run.stop.is_set)
    except Timeout:
        if run.stop.is_set():
            return "interrupted"
        held = contextlib.nullcontext()  # held past a file's deadline by a stalled run
    with held:
        return None if target.is_file() else _fetch_with_retries(url, target, run)


def _fetch_with_retries(url: str, target: Path, run: _Run) -> str:
    """Fetch ``url`` into ``target``, retrying as :class:`~urllib3.util.Retry` says within the
    file's deadline; return ``"ok"`` or the reason it failed."""
    retry, end = run.retry, time.monotonic() + run.deadline
    while True:
        try:
            _fetch_once(url, target, run, end)
            return "ok"
        except _Refused as exc:
            return str(exc)
        except _Retryable as exc:
            try:
                retry = retry.increment("GET", url, response=exc.response)
            except MaxRetryError:
                return f"{exc}; gave up after {len(retry.history) + 1} attempts"
            delay = _retry_delay(retry, exc.response)
            if time.monotonic() + delay > end:
                return f"{exc}; no time left for a retry within the deadline of {run.deadline:g} s"
            if run.stop.wait(delay):
                return "interrupted"
        except Exception as exc:  # noqa: BLE001 - no single URL may stop the run
            return f"{type(exc).__name__}: {exc}"
        except BaseException:  # KeyboardInterrupt, SystemExit: stop the other workers too
            run.stop.set()
            raise


def _retry_delay(retry: Retry, response: urllib3.BaseHTTPResponse | None) -> float:
    """Seconds to wait before the next attempt: the server's ``Retry-After`` where it gives a
    usable one, else the back-off (both capped by :data:`MAX_RETRY_DELAY`)."""
    if response is not None:
        with contextlib.suppress(HTTPError):  # an unreadable Retry-After: InvalidHeader
            after = retry.get_retry_after(response)
            if after is not None:
                return min(after, MAX_RETRY_DELAY)
    return retry.get_backoff_time()


def _open_url(http: urllib3.PoolManager, url: str, timeout: float) -> urllib3.BaseHTTPResponse:
    """Send the request (following redirects) and return the response, its body unread."""
    return http.request(
        "GET", url, preload_content=False, decode_content=False, enforce_content_length=False,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=Retry(total=None, connect=0, read=0, status=0, other=0, redirect=MAX_REDIRECTS),
    )


def _fetch_once(url: str, target: Path, run: _Run, end: float) -> None:
    """One attempt: fetch ``url``, check the body is an image and rename it to ``target``."""
    timeout = min(run.timeout, max(end - time.monotonic(), 0.01))
    try:
        with _open_url(run.http, url, timeout) as response:
            _check_response(response, run)
            with _partial_file(target) as fh:
                _stream_body(response, fh, run, end)
                fh.seek(0)
                verify_image_file(fh, target.name)
    except LocationValueError as exc:  # say, a redirect to a file: location
        raise _Refused(f"refused: not an http(s) location ({exc})") from None
    except HTTPError as exc:  # no connection, a timeout, too many redirects, a broken body
        cause = exc.reason if isinstance(exc, MaxRetryError) else exc
        if isinstance(cause, ResponseError):
            raise _Refused(str(cause)) from None
        raise _Retryable(f"connection failed or timed out ({type(cause).__name__}: {cause})"
                         ) from None
    except BadImageError as exc:
        raise _Refused(f"not a valid image ({exc.reason})") from None
    except FileNotFoundError:
        raise _Retryable(f"the partial download of {target.name} vanished before it "
                         "was moved into place") from None
    except OSError as exc:  # of the local file (whose temporary name is left out)
        raise _Retryable(f"file error on {target.name} ({exc.strerror or exc})") from None


def _check_response(response: urllib3.BaseHTTPResponse, run: _Run) -> None:
    """Refuse, or ask to retry, a response that is not a 2xx image body within max_bytes."""
    if response.status >= 300:
        reason = f"HTTP {response.status} {response.reason or ''}".rstrip()
        if run.retry.is_retry("GET", response.status, "Retry-After" in response.headers):
            raise _Retryable(reason, response)
        raise _Refused(reason)
    final_url = response.geturl() or ""
    if any(marker in final_url for marker in PLACEHOLDER_URL_MARKERS):
        raise _Refused(f"redirected to a placeholder image ({final_url})")
    if (response.length_remaining or 0) > run.max_bytes:  # as its Content-Length says
        raise _Refused(f"body of {response.length_remaining} bytes is over "
                       f"max_bytes={run.max_bytes}")


def _stream_body(response: urllib3.BaseHTTPResponse, fh: BinaryIO, run: _Run,
                 end: float) -> None:
    """Copy the body into ``fh``, within max_bytes and the deadline (checked between reads,
    which each return as soon as data arrives or the read timeout passes)."""
    while chunk := response.read1(_CHUNK_SIZE):
        if run.stop.is_set():
            raise _Refused("interrupted")
        if response.tell() > run.max_bytes:
            raise _Refused(f"body is over max_bytes={run.max_bytes}")
        if time.monotonic() > end:
            raise _Refused(f"not complete within the deadline of {run.deadline:g} s "
                           f"({response.tell()} bytes received)")
        fh.write(chunk)
    if response.length_remaining:  # the connection closed before Content-Length bytes came
        raise _Retryable(f"body truncated ({response.tell()} of "
                         f"{response.tell() + response.length_remaining} bytes)")
    if response.tell() == 0:
        raise _Refused("empty body")


@contextlib.contextmanager
def _partial_file(target: Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``target`` (read and write), renamed to it if the block ends
    well and removed in any case. The image gets the mode any new file gets."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
    fh = open_new_file(tmp, "w+b")
    try:
        with fh:
            yield fh
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _remove_abandoned_temp_files(directory: Path, run: _Run) -> None:
    """Remove the temporary files a killed run left behind: older than :data:`STALE_TEMP_AGE`
    and of an image whose lock nobody holds. A young one is kept: a run that gave up waiting
    for a lock may be writing it."""
    now = time.time()
    for path in directory.glob(f".*{TEMP_SUFFIX}"):
        target = path.name[1:-len(TEMP_SUFFIX)].rsplit(".", 1)[0]  # .NAME.RANDOM.wjs-partial
        with contextlib.suppress(FileNotFoundError, Timeout):
            if now - path.lstat().st_mtime > STALE_TEMP_AGE:
                with _lock(run.locks, target).acquire(timeout=0):
                    path.unlink()


def _read_failures(path: Path) -> list[tuple[str, str, str]]:
    """The rows of an existing failures manifest (none if there is no file, or one that is
    not a manifest: it is warned about, and replaced)."""
    detail = ""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        return []
    except (UnicodeDecodeError, csv.Error) as exc:  # latin-1, say, or a field over csv's limit
        rows, detail = [[]], f" (it is not UTF-8 CSV: {exc})"
    if rows and (tuple(rows[0]) != _MANIFEST_HEADER or any(len(r) != 3 for r in rows[1:])):
        warn(f"{path} is not a failures manifest with columns {', '.join(_MANIFEST_HEADER)}"
             f"{detail}; it is replaced by this run's failures.", DownloadWarning)
        return []
    return [(url, name, reason) for url, name, reason in rows[1:]]


def _update_failures(directory: Path, run: _Run, plan: list[tuple[str, str]],
                     failed: dict[str, str]) -> None:
    """Merge this run's outcome (``failed``: URL -> reason) into the failures manifest (url,
    filename, reason).

    Rows of this run's (url, filename) pairs are replaced: a pair now on disk leaves the
    file, a pair that failed again gets its new reason. Rows of other runs stay. The merge
    holds the manifest's lock, so concurrent runs do not lose each other's rows.
    """
    path = directory / FAILURES_MANIFEST
    settled = set(plan)
    failures = [(url, name, failed[url]) for url, name in plan if url in failed]
    with _lock(run.locks, FAILURES_MANIFEST):
        kept = [row for row in _read_failures(path) if row[:2] not in settled]
        with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows([_MANIFEST_HEADER, *kept, *failures])


def download_images(
    urls: Sequence[str],
    directory: str | os.PathLike[str],
    *,
    filenames: Sequence[str] | None = None,
    n_jobs: int = 16,
    timeout: float = 10.0,
    deadline: float | None = None,
    retries: int = 3,
    max_bytes: int = 20_000_000,
    verbose: int = 1,
) -> DownloadReport:
    """Download images concurrently into a directory, skipping those already there.

    Each body is streamed to a temporary file in ``directory``, checked to be an image that
    training accepts (so HTML error pages, truncated files and images over the pixel limit
    are refused, the last before they are decoded), then renamed to its final name. A file
    therefore only ever appears complete.

    Timeouts, connection errors, HTTP 5xx and HTTP 429 (too many requests) are retried, as
    urllib3's :class:`~urllib3.util.Retry` does: after the number of seconds a
    ``Retry-After`` header asks for (seconds or an HTTP date), otherwise at once and then with
    exponential back-off and jitter, never longer than ``MAX_RETRY_DELAY`` seconds. Other HTTP
    4xx answers are not retried. No failing URL stops the run: every failure is recorded with
    its reason in the report and in ``directory/_failures.csv``, which is merged with what
    earlier or concurrent runs recorded there (a URL that is now on disk leaves it).

    Several calls may write into one directory at the same time (threads or processes of one
    machine). Each file has a lock, held from the look at the disk to the rename: a URL that
    another run is downloading is waited for and then reported as already present, not
    fetched twice. Temporary files a killed run left behind are removed by a later run once
    they are ``STALE_TEMP_AGE`` seconds old.

    Parameters
    ----------
    urls : sequence of str
        The http(s) URLs to fetch. Redirects are followed (to http(s) locations only).
    directory : str or path-like
        Where to write the images; created if needed.
    filenames : sequence of str, optional
        One plain, unique file name per URL. By default each URL gets the name
        :func:`default_filename` gives it: the last component of its path with unsafe
        characters replaced by ``_``, a dash and 16 hex digits of the URL's hash. The name
        depends on the URL alone, so a file on disk is never taken for another URL's. (In
        version 0.1.0 the default was the bare last component; files saved under those
        names are not recognised and are downloaded again under the new names.)
    n_jobs : int, default=16
        Maximum number of downloads in flight at once.
    timeout : float, default=10.0
        Seconds to wait for a connection and for each read of the answer.
    deadline : float, optional
        Seconds one file may take in all, retries and their waits included: a server that
        keeps sending a trickle of bytes is abandoned then (within one ``timeout``). Default
        ``DEADLINE_TIMEOUTS * timeout`` (100 s with the default timeout). Also about how long
        a run waits for another run that is fetching the same file.
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
        If ``n_jobs``, ``timeout``, ``deadline``, ``retries`` or ``max_bytes`` is out of
        range, if a URL is not http(s), or if ``filenames`` does not give one unique plain
        name per URL.
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
    _check_settings(n_jobs, retries, timeout, deadline, max_bytes)
    plan = _plan(urls, filenames)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    retry = Retry(total=retries, status_forcelist=RETRY_STATUSES, backoff_factor=BACKOFF_BASE,
                  backoff_jitter=BACKOFF_BASE, backoff_max=MAX_RETRY_DELAY)
    run = _Run(http=urllib3.PoolManager(maxsize=n_jobs, headers={"User-Agent": _USER_AGENT}),
               retry=retry, locks=_lock_folder(directory), timeout=float(timeout),
               deadline=float(deadline or DEADLINE_TIMEOUTS * timeout), max_bytes=max_bytes,
               stop=threading.Event())
    _remove_abandoned_temp_files(directory, run)
    outcomes: dict[str, str | None] = {  # None: already on disk
        url: None for url, name in plan if (directory / name).is_file()}
    todo = [(url, name) for url, name in plan if url not in outcomes]
    try:
        outcomes |= _run_downloads(todo, directory, run, n_jobs=n_jobs, verbose=verbose,
                                   total=len(plan))
        report = DownloadReport(directory=str(directory))
        for url, _ in plan:  # in input order
            if (outcome := outcomes[url]) is None:
                report.skipped.append(url)
            elif outcome == "ok":
                report.ok.append(url)
            else:
                report.failed[url] = outcome
        _update_failures(directory, run, plan, report.failed)
    finally:
        run.http.clear()  # the pool's connections closed, however the run ended
    return report


def _run_downloads(todo: list[tuple[str, str]], directory: Path, run: _Run, *, n_jobs: int,
                   verbose: int, total: int) -> dict[str, str | None]:
    """Fetch ``todo`` on ``n_jobs`` threads; return each URL's outcome (see :func:`_download`).

    On an interruption, in-flight downloads are abandoned (each removes its temporary file)
    before the exception goes on.
    """
    outcomes: dict[str, str | None] = {}
    n_failed = 0
    with tqdm(total=total, initial=total - len(todo), desc="Downloading images", unit="img",
              disable=not verbose) as bar, cf.ThreadPoolExecutor(n_jobs, "wjs-download") as pool:
        futures = {pool.submit(_download, url, directory / name, run): url for url, name in todo}
        try:
            for future in cf.as_completed(futures):
                outcome = outcomes[futures[future]] = future.result()
                if outcome not in (None, "ok"):
                    n_failed += 1
                    bar.set_postfix(failed=n_failed, refresh=False)
                bar.update(1)
        except BaseException:
            run.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return outcomes
