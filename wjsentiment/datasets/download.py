"""Download many images over HTTP(S), robustly and resumably.

Only the standard library is used for networking (:mod:`urllib.request` and a
:class:`~concurrent.futures.ThreadPoolExecutor`). Every body is streamed to a
temporary file in the target directory, checked to decode as an image, and only
then moved to its final name with :func:`os.replace`, so the directory never holds
a partial image, even if the process is killed midway.

This module deliberately depends only on the standard library, Pillow and tqdm.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import http.client
import io
import os
import random
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

__all__ = ["DownloadReport", "download_images"]

#: Base delay in seconds of the exponential backoff between retries: attempt ``k``
#: (counted from 0) waits about ``BACKOFF_BASE * 2**k`` seconds, with jitter.
BACKOFF_BASE: float = 0.5

#: Name of the failures manifest written beside the images (CSV: url, filename, reason).
FAILURES_MANIFEST: str = "_failures.csv"

#: Suffix of the temporary files that hold a body while it is being downloaded.
TEMP_SUFFIX: str = ".wjs-partial"

#: Substrings of a final (post-redirect) URL that mark a "photo not available" placeholder
#: image; such responses are refused rather than stored as if they were the photo.
PLACEHOLDER_URL_MARKERS: tuple[str, ...] = ("photo_unavailable",)

_CHUNK_SIZE = 64 * 1024
_USER_AGENT = "wjsentiment-downloader/1 (+python urllib)"
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
    """A transient failure worth another attempt."""


class _Stopped(Exception):
    """The run was interrupted; abandon this URL quietly."""


def _default_filename(url: str) -> str:
    """Make a safe file name from the last path component of ``url``."""
    path = urllib.parse.urlsplit(url).path
    base = urllib.parse.unquote(path.rsplit("/", 1)[-1])
    base = _SAFE_CHARS.sub("_", base).lstrip(".")
    if not base or base == FAILURES_MANIFEST or base.endswith(TEMP_SUFFIX):
        base = hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]
    return base[:150]


def _with_hash(name: str, url: str) -> str:
    stem, dot, ext = name.rpartition(".")
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:10]
    if not dot or not stem:
        return f"{name}-{digest}"
    return f"{stem}-{digest}.{ext}"


def _check_filename(name: object) -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise ValueError(f"filenames contains an invalid file name {name!r}; use plain names.")
    if "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(
            f"filenames contains {name!r}, which has a path separator; pass plain file "
            "names and put the folder in `directory`."
        )
    if name == FAILURES_MANIFEST or name.endswith(TEMP_SUFFIX):
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
        unique_urls = list(dict.fromkeys(urls))
        names = [_default_filename(u) for u in unique_urls]
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        named = zip(names, unique_urls, strict=True)
        names = [_with_hash(n, u) if counts[n] > 1 else n for n, u in named]
        return list(zip(unique_urls, names, strict=True))
    if isinstance(filenames, str):
        raise ValueError("filenames must be a sequence of names, one per URL, not a string.")
    filenames = list(filenames)
    if len(filenames) != len(urls):
        raise ValueError(
            f"filenames has {len(filenames)} entries but urls has {len(urls)}; "
            "pass exactly one file name per URL."
        )
    pairs = list(dict.fromkeys(zip(urls, (_check_filename(n) for n in filenames), strict=True)))
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


def _clean_stale_temp_files(directory: Path) -> None:
    """Remove temporary files left behind by an earlier run that was killed."""
    for entry in os.scandir(directory):
        if entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False):
            try:
                os.remove(entry.path)
            except FileNotFoundError:
                pass


def _open_url(url: str, timeout: float) -> http.client.HTTPResponse:
    """Open ``url`` (following redirects) and return the response."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)  # schemes checked in _plan


def _verify_image(path: str) -> None:
    """Raise :class:`_Refused` unless ``path`` fully decodes as an image."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # Pillow raises many types for bad data
        raise _Refused(f"not a valid image ({type(exc).__name__}: {exc})") from None


def _fetch_one(
    url: str, target: Path, *, timeout: float, max_bytes: int, stop: threading.Event
) -> None:
    """Download ``url`` once to ``target`` (atomically); raise on any failure."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        try:
            response = _open_url(url, timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code >= 500:
                raise _Retryable(reason) from None
            raise _Refused(reason) from None
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
            received = 0
            with open(tmp, "wb") as fh:
                while True:
                    if stop.is_set():
                        raise _Stopped()
                    chunk = response.read1(_CHUNK_SIZE)  # returns as soon as data arrives
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise _Refused(f"body is over max_bytes={max_bytes}")
                    fh.write(chunk)
        if expected is not None and received < expected:
            raise _Retryable(f"body truncated ({received} of {expected} bytes)")
        if received == 0:
            raise _Refused("empty body")
        _verify_image(str(tmp))
        os.replace(tmp, target)
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
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass


def _fetch_with_retries(
    url: str,
    target: Path,
    *,
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
            _fetch_one(url, target, timeout=timeout, max_bytes=max_bytes, stop=stop)
            return None
        except _Stopped:
            return "interrupted"
        except _Refused as exc:
            return str(exc)
        except _Retryable as exc:
            reason = str(exc)
        except Exception as exc:  # no single URL may stop the run
            return f"{type(exc).__name__}: {exc}"
        except BaseException:  # KeyboardInterrupt, SystemExit: stop the other workers too
            stop.set()
            raise
        if attempt < retries:
            delay = BACKOFF_BASE * (2**attempt) * (0.5 + random.random())
            if stop.wait(delay):
                return "interrupted"
    return f"{reason}; gave up after {retries + 1} attempts"


def _write_failures(directory: Path, failures: list[tuple[str, str, str]]) -> None:
    """Atomically write the failures manifest (url, filename, reason)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["url", "filename", "reason"])
    writer.writerows(failures)
    target = directory / FAILURES_MANIFEST
    tmp = directory / f".{FAILURES_MANIFEST}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(buffer.getvalue())
        os.replace(tmp, target)
    finally:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass


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
    complete; temporary files left by a killed run are removed on the next run.
    Timeouts, connection errors and HTTP 5xx answers are retried with exponential
    backoff; HTTP 4xx answers are not. No failing URL stops the run: every failure
    is recorded with its reason in the report and in ``directory/_failures.csv``.

    Parameters
    ----------
    urls : sequence of str
        The http(s) URLs to fetch. Redirects are followed.
    directory : str or path-like
        Where to write the images; created if needed.
    filenames : sequence of str, optional
        One plain, unique file name per URL. By default the last component of each
        URL's path is used, with unsafe characters replaced by ``_`` (and a short hash
        of the URL appended where two URLs would share a name).
    n_jobs : int, default=16
        Maximum number of downloads in flight at once.
    timeout : float, default=10.0
        Socket timeout in seconds for connecting and for each read.
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
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be an integer >= 1, got {n_jobs!r}.")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}.")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be an integer >= 1, got {max_bytes!r}.")
    plan = _plan(urls, filenames)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _clean_stale_temp_files(directory)
    report = DownloadReport(directory=str(directory))
    todo = []
    for url, name in plan:
        if (directory / name).is_file():
            report.skipped.append(url)
        else:
            todo.append((url, name))

    stop = threading.Event()
    failures: list[tuple[str, str, str]] = []
    with tqdm(
        total=len(plan),
        initial=len(report.skipped),
        desc="Downloading images",
        unit="img",
        disable=not verbose,
    ) as bar:
        executor = cf.ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="wjs-download")
        try:
            futures = {
                executor.submit(
                    _fetch_with_retries,
                    url,
                    directory / name,
                    timeout=float(timeout),
                    retries=retries,
                    max_bytes=max_bytes,
                    stop=stop,
                ): (url, name)
                for url, name in todo
            }
            pending = set(futures)
            while pending:
                # A short wait keeps the main thread responsive to Ctrl-C.
                done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    url, name = futures[future]
                    reason = future.result()
                    if reason is None:
                        report.ok.append(url)
                    else:
                        report.failed[url] = reason
                        failures.append((url, name, reason))
                    bar.update(1)
                    if report.failed:
                        bar.set_postfix(failed=len(report.failed), refresh=False)
        except BaseException:
            stop.set()
            executor.shutdown(wait=True, cancel_futures=True)
            _clean_stale_temp_files(directory)
            raise
        executor.shutdown(wait=True)
    # Report in input order, whatever order the downloads finished in.
    order = {url: i for i, (url, _) in enumerate(plan)}
    report.ok.sort(key=order.__getitem__)
    report.failed = dict(sorted(report.failed.items(), key=lambda item: order[item[0]]))
    failures.sort(key=lambda row: order[row[0]])
    _write_failures(directory, failures)
    return report
