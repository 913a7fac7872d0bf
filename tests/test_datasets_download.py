"""Tests for wjsentiment.datasets.download against a local HTTP server (no internet)."""

from __future__ import annotations

import concurrent.futures as cf
import csv
import email.utils
import gzip
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from datasets_server import (
    LocalImageServer,
    Reply,
    assert_clean_image_dir,
    emoji_png,
    make_jpeg,
    png_header_only,
)
from filelock import SoftFileLock
from PIL import ImageFile

from wjsentiment.datasets import DownloadReport, default_filename, download_images
from wjsentiment.datasets import download as download_module
from wjsentiment.images.decode import BadImageError, decode_image

PNG = emoji_png(0)
JPEG = make_jpeg()


@pytest.fixture
def server():
    with LocalImageServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_BASE", 0.0)


def _get(urls, directory, **kwargs) -> DownloadReport:
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("n_jobs", 4)
    return download_images(urls, directory, **kwargs)


def test_ok_png_and_jpeg_saved_byte_identical(server, tmp_path):
    png_url = server.add("/img/a.png", Reply(body=PNG))
    jpg_url = server.add("/img/b.jpg", Reply(body=JPEG, content_type="image/jpeg"))
    report = _get([png_url, jpg_url], tmp_path)
    assert report.ok == [png_url, jpg_url]
    assert report.failed == {} and report.skipped == []
    assert (tmp_path / default_filename(png_url)).read_bytes() == PNG
    assert (tmp_path / default_filename(jpg_url)).read_bytes() == JPEG
    assert assert_clean_image_dir(tmp_path) == sorted(map(default_filename, [png_url, jpg_url]))
    assert "2 downloaded" in repr(report)


def test_downloaded_files_follow_the_umask(server, tmp_path):
    """An image gets the mode any new file gets, not a temporary file's 0600."""
    import stat

    url = server.add("/img/a.png", Reply(body=PNG))
    previous = os.umask(0o027)
    try:
        assert _get([url], tmp_path).ok == [url]
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / default_filename(url)).stat().st_mode)
    assert mode == 0o666 & ~0o027, oct(mode)


def test_404_is_not_retried_and_lands_in_manifest(server, tmp_path):
    url = server.add("/gone.jpg", Reply(404, b"no", content_type="text/plain"))
    report = _get([url], tmp_path, retries=3)
    assert list(report.failed) == [url]
    assert "404" in report.failed[url]
    assert server.hits["/gone.jpg"] == 1
    assert not (tmp_path / default_filename(url)).exists()
    with open(tmp_path / "_failures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["url"], r["filename"]) for r in rows] == [(url, default_filename(url))]
    assert "404" in rows[0]["reason"]


def test_500_then_200_is_retried(server, tmp_path):
    url = server.add("/flaky.png", Reply(500, b"oops", content_type="text/plain"), Reply(body=PNG))
    report = _get([url], tmp_path, retries=2)
    assert report.ok == [url]
    assert server.hits["/flaky.png"] == 2
    assert (tmp_path / default_filename(url)).read_bytes() == PNG


def test_persistent_500_gives_up_after_retries(server, tmp_path):
    url = server.add("/down.png", Reply(503, b"busy", content_type="text/plain"))
    report = _get([url], tmp_path, retries=2)
    assert "503" in report.failed[url]
    assert server.hits["/down.png"] == 3


def test_slow_response_times_out_and_is_retried(server, tmp_path):
    url = server.add("/slow.png", Reply(body=PNG, delay=10.0))
    start = time.monotonic()
    report = _get([url], tmp_path, timeout=0.3, retries=1)
    assert time.monotonic() - start < 8.0  # two attempts of about 0.3 s, not the full delay
    assert "timed out" in report.failed[url]
    server.wait_for_hits("/slow.png", 2)
    assert not (tmp_path / default_filename(url)).exists()
    assert_clean_image_dir(tmp_path)


def test_html_page_with_200_is_rejected(server, tmp_path):
    url = server.add(
        "/photo.jpg", Reply(body=b"<html><body>Not here</body></html>", content_type="text/html")
    )
    report = _get([url], tmp_path)
    assert "not a valid image" in report.failed[url]
    assert server.hits["/photo.jpg"] == 1  # bad content is not retried
    assert assert_clean_image_dir(tmp_path) == []


@pytest.mark.parametrize("payload", [PNG, JPEG], ids=["png", "jpeg"])
def test_truncated_image_is_rejected(server, tmp_path, payload):
    url = server.add("/cut.img", Reply(body=payload[: len(payload) // 2]))
    report = _get([url], tmp_path)
    assert "not a valid image" in report.failed[url]
    assert assert_clean_image_dir(tmp_path) == []


def test_body_shorter_than_content_length_is_rejected(server, tmp_path):
    url = server.add("/short.png", Reply(body=PNG[:100], content_length=len(PNG)))
    report = _get([url], tmp_path, retries=1)
    assert "truncated" in report.failed[url]
    assert server.hits["/short.png"] == 2  # a broken connection is worth a retry
    assert assert_clean_image_dir(tmp_path) == []


def test_redirect_is_followed(server, tmp_path):
    old = server.add("/old.png", Reply(302, headers={"Location": "/new.png"}))
    server.add("/new.png", Reply(body=PNG))
    report = _get([old], tmp_path)
    assert report.ok == [old]
    assert (tmp_path / default_filename(old)).read_bytes() == PNG
    assert server.hits["/new.png"] == 1


def test_redirect_to_placeholder_is_refused(server, tmp_path):
    url = server.add("/dead.jpg", Reply(302, headers={"Location": "/photo_unavailable.png"}))
    server.add("/photo_unavailable.png", Reply(body=PNG))
    report = _get([url], tmp_path)
    assert "placeholder" in report.failed[url]
    assert assert_clean_image_dir(tmp_path) == []


def test_oversized_body_refused_by_content_length(server, tmp_path):
    url = server.add("/big.jpg", Reply(body=JPEG, content_type="image/jpeg"))
    report = _get([url], tmp_path, max_bytes=len(JPEG) - 1)
    assert "max_bytes" in report.failed[url]
    assert server.hits["/big.jpg"] == 1
    assert assert_clean_image_dir(tmp_path) == []


def test_oversized_body_refused_while_streaming(server, tmp_path):
    url = server.add("/big2.jpg", Reply(body=JPEG, content_type="image/jpeg", send_length=False))
    report = _get([url], tmp_path, max_bytes=len(JPEG) - 1)
    assert "max_bytes" in report.failed[url]
    assert assert_clean_image_dir(tmp_path) == []
    # The same body without a length is fine under the limit.
    assert _get([url], tmp_path, max_bytes=len(JPEG)).ok == [url]


def test_second_run_skips_what_is_on_disk(server, tmp_path):
    urls = [server.add(f"/s/{i}.png", Reply(body=emoji_png(i))) for i in range(3)]
    missing = server.add("/s/missing.png", Reply(404))
    first = _get([*urls, missing], tmp_path)
    assert first.ok == urls
    second = _get([*urls, missing], tmp_path)
    assert second.ok == [] and second.skipped == urls
    assert list(second.failed) == [missing]
    assert all(server.hits[f"/s/{i}.png"] == 1 for i in range(3))
    assert server.hits["/s/missing.png"] == 2  # failures are tried again next run


def test_concurrency_bound_is_respected(server, tmp_path):
    urls = [server.add(f"/c/{i}.png", Reply(body=PNG, delay=0.25)) for i in range(9)]
    report = _get(urls, tmp_path, n_jobs=3)
    assert len(report.ok) == 9
    assert 2 <= server.max_in_flight <= 3


def test_interrupt_midway_leaves_no_partial_file_and_resumes(server, tmp_path, monkeypatch):
    urls = [server.add(f"/k/{i}.jpg", Reply(body=make_jpeg(seed=i))) for i in range(5)]
    real_open = download_module._open_url

    class Interrupting:
        """A response whose second read is 'interrupted' by Ctrl-C."""

        def __init__(self, response):
            self._response, self._reads = response, 0

        def __getattr__(self, name):
            return getattr(self._response, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._response.close()

        def read1(self, n=-1):
            self._reads += 1
            if self._reads == 2:
                partial = [p for p in os.listdir(tmp_path) if p.endswith(".wjs-partial")]
                assert len(partial) == 1  # a partial body is on disk at this moment
                raise KeyboardInterrupt
            return self._response.read1(min(n, 100))

    def open_url(http, url, timeout):
        response = real_open(http, url, timeout)
        return Interrupting(response) if url == urls[2] else response

    monkeypatch.setattr(download_module, "_open_url", open_url)
    with pytest.raises(KeyboardInterrupt):
        _get(urls, tmp_path, n_jobs=1)
    assert assert_clean_image_dir(tmp_path) == sorted(map(default_filename, urls[:2]))

    monkeypatch.setattr(download_module, "_open_url", real_open)
    report = _get(urls, tmp_path, n_jobs=1)
    assert report.skipped == urls[:2]
    assert report.ok == urls[2:]
    assert [server.hits[f"/k/{i}.jpg"] for i in range(5)] == [1, 1, 2, 1, 1]
    assert assert_clean_image_dir(tmp_path) == sorted(map(default_filename, urls))


_KILLED_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("dl", sys.argv[1])
    dl = importlib.util.module_from_spec(spec)
    sys.modules["dl"] = dl
    spec.loader.exec_module(dl)
    dl.download_images(sys.argv[3:], sys.argv[2], n_jobs=1, verbose=0)
    """
)


def test_killed_process_leaves_only_whole_files_and_next_run_cleans(server, tmp_path, monkeypatch):
    # The killed run's temporary file is seconds old: count it as stale at once.
    monkeypatch.setattr(download_module, "STALE_TEMP_AGE", 0.0)
    body = make_jpeg(size=128, seed=7)
    urls = [server.add(f"/p/{i}.jpg", Reply(body=make_jpeg(seed=i))) for i in range(2)]
    urls.append(
        server.add("/p/2.jpg", Reply(body=body, hang_after=len(body) // 2), Reply(body=body))
    )
    urls.append(server.add("/p/3.jpg", Reply(body=make_jpeg(seed=3))))
    module_file = Path(download_module.__file__)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SCRIPT, str(module_file), str(tmp_path), *urls]
    )
    try:
        deadline = time.monotonic() + 20
        # Wait until the third file is half-written (its server reply then stalls).
        partial = f".{default_filename(urls[2])}."
        while not any(n.startswith(partial) for n in os.listdir(tmp_path)):
            assert proc.poll() is None, "the download process ended before it was killed"
            assert time.monotonic() < deadline, "no partial download appeared"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    names = os.listdir(tmp_path)
    assert default_filename(urls[2]) not in names and default_filename(urls[3]) not in names
    assert sorted(n for n in names if not n.startswith(".")) == sorted(
        map(default_filename, urls[:2])
    )

    report = _get(urls, tmp_path, n_jobs=1)
    assert report.skipped == urls[:2]
    assert report.ok == urls[2:]
    assert server.hits["/p/0.jpg"] == 1 and server.hits["/p/1.jpg"] == 1
    assert assert_clean_image_dir(tmp_path) == sorted(map(default_filename, urls))
    assert (tmp_path / default_filename(urls[2])).read_bytes() == body


def test_unreachable_host_is_a_failure_not_a_crash(tmp_path):
    # Port 9 on localhost (discard) is closed: a connection error, retried, then reported.
    report = _get(["http://127.0.0.1:9/x.png"], tmp_path, retries=1, timeout=1.0)
    assert "connection" in report.failed["http://127.0.0.1:9/x.png"]


def test_default_filenames_are_safe_and_distinct(server, tmp_path):
    a = server.add("/a/img.png", Reply(body=emoji_png(1)))
    b = server.add("/b/img.png", Reply(body=emoji_png(2)))
    q = server.add("/c/we%20ird%3Bname.png", Reply(body=PNG))
    report = _get([a, b, q + "?size=large", a], tmp_path)
    assert report.failed == {}
    names = assert_clean_image_dir(tmp_path)
    assert len(names) == 3
    assert default_filename(q + "?size=large") in names
    assert default_filename(q).startswith("we_ird_name-") and default_filename(q).endswith(".png")
    assert sum(n.startswith("img-") and n.endswith(".png") for n in names) == 2


def test_explicit_filenames(server, tmp_path):
    url = server.add("/x.png", Reply(body=PNG))
    report = _get([url], tmp_path, filenames=["123.jpg"])
    assert report.ok == [url]
    assert assert_clean_image_dir(tmp_path) == ["123.jpg"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_jobs": 0}, "n_jobs"),
        ({"retries": -1}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"filenames": ["a.jpg"]}, "filenames"),
        ({"filenames": ["a.jpg", "a.jpg"]}, "filenames"),
        ({"filenames": ["a.jpg", "../b.jpg"]}, "filenames"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, message):
    urls = ["http://127.0.0.1:9/a.jpg", "http://127.0.0.1:9/b.jpg"]
    with pytest.raises(ValueError, match=message):
        download_images(urls, tmp_path, verbose=0, **kwargs)


def test_non_http_url_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="urls"):
        download_images(["file:///etc/passwd"], tmp_path, verbose=0)


def test_report_repr_lists_failures():
    report = DownloadReport(ok=["u1"], failed={f"u{i}": "HTTP 404" for i in range(2, 9)})
    text = repr(report)
    assert "1 downloaded, 0 already present, 7 failed (of 8)" in text
    assert "failed u2: HTTP 404" in text and "and 2 more failures" in text


# --- several runs into one folder -------------------------------------------------------


def _manifest(directory) -> set[tuple[str, str]]:
    with open(Path(directory) / "_failures.csv", newline="", encoding="utf-8") as fh:
        return {(row["url"], row["filename"]) for row in csv.DictReader(fh)}


def _wait_for_partial(directory, name: str, timeout: float = 20.0) -> None:
    """Wait until a temporary file of ``name`` holds some bytes (its body is mid-way)."""
    prefix = f".{name}."
    deadline = time.monotonic() + timeout
    while True:
        sizes = [e.stat().st_size for e in os.scandir(directory) if e.name.startswith(prefix)]
        if any(sizes):
            return
        assert time.monotonic() < deadline, f"no partial download of {name} appeared"
        time.sleep(0.01)


def test_two_concurrent_runs_into_one_folder_lose_nothing(server, tmp_path):
    body = make_jpeg(size=128, seed=11)
    resume = threading.Event()
    shared = server.add(
        "/r/shared.jpg",
        Reply(body=body, content_type="image/jpeg", hang_after=len(body) // 2, resume=resume),
        Reply(body=body, content_type="image/jpeg"),
    )
    only_second = server.add("/r/second.jpg", Reply(body=JPEG, content_type="image/jpeg"))
    gone_first = server.add("/r/gone-1.jpg", Reply(404))
    gone_second = server.add("/r/gone-2.jpg", Reply(404))

    with cf.ThreadPoolExecutor(2) as pool:
        first = pool.submit(_get, [shared, gone_first], tmp_path, retries=1)
        try:
            _wait_for_partial(tmp_path, default_filename(shared))
            second = pool.submit(_get, [shared, only_second, gone_second], tmp_path, retries=1)
            # The second run has started fetching, so its start-up is over...
            server.wait_for_hits("/r/gone-2.jpg", 1)
            server.wait_for_hits("/r/second.jpg", 1)
            # ...and the first run's half-written file is still there.
            prefix = f".{default_filename(shared)}."
            assert any(n.startswith(prefix) for n in os.listdir(tmp_path))
        finally:
            resume.set()
        first, second = first.result(timeout=60), second.result(timeout=60)

    assert first.ok == [shared] and list(first.failed) == [gone_first]
    assert second.ok == [only_second] and list(second.failed) == [gone_second]
    assert second.skipped == [shared]  # waited for the first run instead of fetching it too
    assert server.hits["/r/shared.jpg"] == 1
    assert (tmp_path / default_filename(shared)).read_bytes() == body
    assert (tmp_path / default_filename(only_second)).read_bytes() == JPEG
    assert _manifest(tmp_path) == {
        (gone_first, default_filename(gone_first)),
        (gone_second, default_filename(gone_second)),
    }
    assert assert_clean_image_dir(tmp_path) == sorted(map(default_filename, [shared, only_second]))


def test_failures_manifest_merges_runs(server, tmp_path):
    flaky = server.add("/m/flaky.png", Reply(404), Reply(body=PNG))
    gone = server.add("/m/gone.png", Reply(404))
    other = server.add("/m/other.png", Reply(404))
    _get([flaky, gone], tmp_path)
    assert _manifest(tmp_path) == {(flaky, default_filename(flaky)), (gone, default_filename(gone))}
    report = _get([flaky, other], tmp_path)
    assert report.ok == [flaky]
    # flaky succeeded and leaves; gone (not in this run) stays; other is added.
    assert _manifest(tmp_path) == {(gone, default_filename(gone)), (other, default_filename(other))}


@pytest.mark.parametrize("content", [
    "url,filename,reason\nhttp://x/caf\xe9.png,caf\xe9.png,HTTP 404\n".encode("latin-1"),
    b"url,filename,reason\n\"" + b"x" * 200_000 + b"\n",  # csv.Error: over the field limit
    b"other,columns\n",
])
def test_a_failures_manifest_that_cannot_be_read_is_replaced_with_a_warning(server, tmp_path,
                                                                            content):
    from wjsentiment.exceptions import DownloadWarning

    (tmp_path / "_failures.csv").write_bytes(content)
    gone = server.add("/m/gone.png", Reply(404))
    with pytest.warns(DownloadWarning, match="_failures.csv.*replaced by this run's failures"):
        report = _get([gone], tmp_path)
    assert list(report.failed) == [gone]
    assert _manifest(tmp_path) == {(gone, default_filename(gone))}


def test_the_connections_are_closed_when_a_run_fails(server, tmp_path, monkeypatch):
    import urllib3

    cleared = []
    monkeypatch.setattr(urllib3.PoolManager, "clear", lambda self: cleared.append(self))

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(download_module, "_update_failures", full_disk)
    with pytest.raises(OSError, match="No space"):
        _get([server.add("/m/a.png", Reply(body=PNG))], tmp_path)
    assert len(cleared) == 1


def test_young_or_locked_temp_files_are_kept_old_unlocked_ones_removed(tmp_path, monkeypatch):
    young = tmp_path / ".a.jpg.0123456789ab.wjs-partial"
    old = tmp_path / ".b.jpg.0123456789ab.wjs-partial"
    old_locked = tmp_path / ".c.jpg.ba9876543210.wjs-partial"
    for path in (young, old, old_locked):
        path.write_bytes(b"partial body")
    stale = time.time() - 2 * download_module.STALE_TEMP_AGE
    os.utime(old, (stale, stale))
    os.utime(old_locked, (stale, stale))
    locks = download_module._lock_folder(tmp_path)
    with download_module._lock(locks, "c.jpg"):  # a live run, stalled for long, still owns it
        download_images([], tmp_path, verbose=0)
    assert young.exists() and old_locked.exists()
    assert not old.exists()


def test_without_locks_age_alone_decides_and_downloads_work(server, tmp_path, monkeypatch):
    # As where the file system has no locks: filelock's lock files alone (SoftFileLock).
    monkeypatch.setattr(download_module, "FileLock", SoftFileLock)
    young = tmp_path / ".a.jpg.0123456789ab.wjs-partial"
    old = tmp_path / ".b.jpg.0123456789ab.wjs-partial"
    for path in (young, old):
        path.write_bytes(b"partial body")
    stale = time.time() - 2 * download_module.STALE_TEMP_AGE
    os.utime(old, (stale, stale))
    url = server.add("/w/img.png", Reply(body=PNG))
    gone = server.add("/w/gone.png", Reply(404))
    report = _get([url, gone], tmp_path)
    assert report.ok == [url] and list(report.failed) == [gone]
    assert young.exists() and not old.exists()
    assert (tmp_path / default_filename(url)).read_bytes() == PNG
    assert _manifest(tmp_path) == {(gone, default_filename(gone))}


def test_vanished_temp_file_is_retried(server, tmp_path, monkeypatch):
    url = server.add("/v/img.png", Reply(body=PNG))
    real_verify = download_module.verify_image_file
    calls = []

    def verify_after_another_run_removed_it(fh, source):
        calls.append(source)
        if len(calls) == 1:
            for partial in tmp_path.glob(f".{default_filename(url)}.*"):
                os.remove(partial)
        return real_verify(fh, source)

    monkeypatch.setattr(download_module, "verify_image_file", verify_after_another_run_removed_it)
    report = _get([url], tmp_path, retries=2)
    assert report.ok == [url] and report.failed == {}
    assert server.hits["/v/img.png"] == 2
    assert (tmp_path / default_filename(url)).read_bytes() == PNG
    assert assert_clean_image_dir(tmp_path) == [default_filename(url)]


# --- HTTP 429 / 503 and Retry-After -----------------------------------------------------


@pytest.fixture
def retry_delays(monkeypatch):
    """Record the delay chosen before each retry, and do not actually wait."""
    delays: list[float] = []
    real = download_module._retry_delay

    def record(retry, response):
        delays.append(real(retry, response))
        return 0.0

    monkeypatch.setattr(download_module, "_retry_delay", record)
    return delays


def _busy(status: int, retry_after: str | None) -> Reply:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return Reply(status, b"slow down", content_type="text/plain", headers=headers)


def test_429_with_retry_after_is_retried_and_the_wait_capped(
    server, tmp_path, monkeypatch, retry_delays
):
    monkeypatch.setattr(download_module, "MAX_RETRY_DELAY", 0.25)
    url = server.add("/t/img.png", _busy(429, "3600"), Reply(body=PNG))
    report = _get([url], tmp_path, retries=2)
    assert report.ok == [url]
    assert server.hits["/t/img.png"] == 2
    assert retry_delays == [0.25]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_are_honoured(server, tmp_path, retry_delays, status):
    url = server.add("/t/img.png", _busy(status, "2"), _busy(status, "7"), Reply(body=PNG))
    report = _get([url], tmp_path, retries=3)
    assert report.ok == [url]
    assert retry_delays == [2.0, 7.0]


def test_retry_after_http_date_is_honoured(server, tmp_path, monkeypatch, retry_delays):
    monkeypatch.setattr(download_module, "MAX_RETRY_DELAY", 1e6)
    when = email.utils.formatdate(time.time() + 3600, usegmt=True)
    url = server.add("/t/img.png", _busy(503, when), Reply(body=PNG))
    assert _get([url], tmp_path, retries=1).ok == [url]
    (delay,) = retry_delays
    assert 3000 < delay <= 3600


def test_429_without_retry_after_backs_off(server, tmp_path, monkeypatch, retry_delays):
    monkeypatch.setattr(download_module, "BACKOFF_BASE", 1.0)
    url = server.add("/t/img.png", _busy(429, None), _busy(429, "soon"), Reply(body=PNG))
    assert _get([url], tmp_path, retries=2).ok == [url]
    # urllib3's Retry: the first retry at once, then 2 s (2 * base) plus jitter of 0 .. base.
    first, second = retry_delays
    assert first == 0.0 and 2.0 <= second <= 3.0


def test_persistent_429_gives_up_and_other_4xx_are_not_retried(server, tmp_path, retry_delays):
    busy = server.add("/t/busy.png", _busy(429, "1"))
    forbidden = server.add("/t/forbidden.png", _busy(403, "1"))
    report = _get([busy, forbidden], tmp_path, retries=2)
    assert "429" in report.failed[busy] and "gave up after 3 attempts" in report.failed[busy]
    assert "403" in report.failed[forbidden]
    assert server.hits["/t/busy.png"] == 3 and server.hits["/t/forbidden.png"] == 1


# --- default file names -----------------------------------------------------------------


def test_url_whose_name_an_earlier_url_took_is_fetched(server, tmp_path):
    first = server.add("/a/img.png", Reply(body=emoji_png(1)))
    second = server.add("/b/img.png", Reply(body=emoji_png(2)))
    assert _get([first], tmp_path).ok == [first]
    report = _get([second], tmp_path)
    assert report.ok == [second] and report.skipped == []
    assert (tmp_path / default_filename(first)).read_bytes() == emoji_png(1)
    assert (tmp_path / default_filename(second)).read_bytes() == emoji_png(2)


def test_file_under_the_old_default_name_is_not_taken_for_the_url(server, tmp_path):
    url = server.add("/legacy/img.png", Reply(body=emoji_png(3)))
    (tmp_path / "img.png").write_bytes(emoji_png(4))  # 0.1.0 named it so; any URL could have
    report = _get([url], tmp_path)
    assert report.ok == [url]
    assert (tmp_path / default_filename(url)).read_bytes() == emoji_png(3)
    assert (tmp_path / "img.png").read_bytes() == emoji_png(4)  # left untouched


def test_default_filename_depends_on_the_url_alone():
    a, b = "http://h/a/img.png", "http://h/b/img.png"
    assert default_filename(a) == default_filename(a)
    assert default_filename(a) != default_filename(b)
    assert default_filename(a).startswith("img-") and default_filename(a).endswith(".png")
    assert default_filename(a + "?v=2") != default_filename(a)
    for last in ("", ".hidden", "x.wjs-partial", "_failures.csv"):
        name = default_filename(f"http://h/{last}")
        assert name and not name.startswith(".") and not name.endswith(".wjs-partial")
        assert name != "_failures.csv"


# --- hardening, round 2 (issue 19) --------------------------------------------------------


def test_a_trickling_server_is_abandoned_at_the_deadline(server, tmp_path):
    body = make_jpeg(size=96, seed=5)  # about 5,000 bytes, one every 0.2 s: half an hour
    url = server.add("/drip.jpg", Reply(body=body, content_type="image/jpeg", chunk_size=1,
                                        chunk_delay=0.2))
    start = time.monotonic()
    report = _get([url], tmp_path, timeout=2.0, retries=0, deadline=1.0)
    elapsed = time.monotonic() - start
    assert "deadline of 1 s" in report.failed[url]
    assert elapsed < 1.0 + 2.0 + 2.0  # the deadline, at most one read timeout, and slack
    assert assert_clean_image_dir(tmp_path) == []


def test_the_default_deadline_follows_the_timeout(server, tmp_path):
    body = make_jpeg(size=96, seed=6)
    url = server.add("/drip.jpg", Reply(body=body, content_type="image/jpeg", chunk_size=8,
                                        chunk_delay=0.05))  # each read well within the timeout
    start = time.monotonic()
    report = _get([url], tmp_path, timeout=0.2, retries=3)
    assert time.monotonic() - start < download_module.DEADLINE_TIMEOUTS * 0.2 + 3.0
    assert "deadline of 2 s" in report.failed[url]
    assert server.hits["/drip.jpg"] == 1  # no time was left for a retry


@pytest.mark.parametrize("deadline", [0, -1.0, float("nan"), float("inf"), "10"])
def test_a_bad_deadline_is_refused(tmp_path, deadline):
    with pytest.raises(ValueError, match="deadline"):
        download_images(["http://127.0.0.1:9/a.jpg"], tmp_path, deadline=deadline, verbose=0)


def test_what_training_refuses_as_a_bomb_is_refused_before_it_is_decoded(server, tmp_path,
                                                                        monkeypatch):
    huge = png_header_only(12_000, 12_000)  # 144 megapixels, in about 100 bytes
    deep = png_header_only(9_000, 9_000, bit_depth=16)  # 81 megapixels of 2 bytes each
    urls = [server.add("/huge.png", Reply(body=huge)), server.add("/deep.png", Reply(body=deep))]
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size))
    report = _get(urls, tmp_path)
    assert list(report.failed) == urls
    assert all("decompression bomb" in reason for reason in report.failed.values())
    assert decoded == []  # refused from the header: no pixel was decoded
    assert assert_clean_image_dir(tmp_path) == []
    for i, data in enumerate((huge, deep)):  # and training refuses the same files
        path = tmp_path / f"copy-{i}.png"
        path.write_bytes(data)
        with pytest.raises(BadImageError, match="decompression bomb"):
            decode_image(str(path), 32)
    assert decoded == []


def test_failure_reasons_do_not_name_the_temporary_file(server, tmp_path):
    page = server.add("/page.jpg", Reply(body=b"<html>gone</html>", content_type="text/html"))
    cut = server.add("/cut.jpg", Reply(body=JPEG[: len(JPEG) // 2], content_type="image/jpeg"))
    report = _get([page, cut], tmp_path)
    for url in (page, cut):
        reason = report.failed[url]
        assert "not a valid image" in reason
        assert download_module.TEMP_SUFFIX not in reason and str(tmp_path) not in reason
    assert _manifest(tmp_path) == {(page, default_filename(page)), (cut, default_filename(cut))}


def test_two_runs_started_together_fetch_each_url_once(server, tmp_path):
    urls = [server.add(f"/both/{i}.png", Reply(body=emoji_png(i), delay=0.1)) for i in range(6)]
    together = threading.Barrier(2)

    def run() -> DownloadReport:
        together.wait(timeout=10)
        return _get(urls, tmp_path, n_jobs=3)

    with cf.ThreadPoolExecutor(2) as pool:
        first, second = (f.result(timeout=60) for f in [pool.submit(run), pool.submit(run)])
    assert [server.hits[f"/both/{i}.png"] for i in range(6)] == [1] * 6
    assert sorted(first.ok + second.ok) == sorted(urls)
    assert sorted(first.skipped + second.skipped) == sorted(urls)  # waited, then found it
    assert first.failed == {} and second.failed == {}
    assert assert_clean_image_dir(tmp_path) == sorted(map(default_filename, urls))


def test_redirects_elsewhere_than_http_and_redirect_loops_are_refused(server, tmp_path):
    to_file = server.add("/f.png", Reply(302, headers={"Location": "file:///etc/passwd"}))
    loop = server.add("/loop.png", Reply(302, headers={"Location": "/loop.png"}))
    report = _get([to_file, loop], tmp_path, retries=2)
    assert "not an http(s) location" in report.failed[to_file]
    assert "redirect" in report.failed[loop]
    assert server.hits["/f.png"] == 1  # refused, not retried
    assert server.hits["/loop.png"] == download_module.MAX_REDIRECTS + 1
    assert assert_clean_image_dir(tmp_path) == []


def test_a_compressed_body_is_kept_as_sent_not_inflated(server, tmp_path):
    bomb = gzip.compress(b"\0" * 10_000_000)  # 10 MB of zeros in about 10 kB
    url = server.add("/z.png", Reply(body=bomb, headers={"Content-Encoding": "gzip"}))
    report = _get([url], tmp_path, max_bytes=len(bomb) + 1)
    assert "not a valid image" in report.failed[url]
    assert assert_clean_image_dir(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="user ids are POSIX's")
def test_locks_are_kept_in_this_accounts_folder_only(server, tmp_path, monkeypatch):
    import tempfile

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    url = server.add("/img/a.png", Reply(body=PNG))
    _get([url], tmp_path / "images")
    (mine,) = root.iterdir()
    assert mine.name == f"wjsentiment-locks-{os.getuid()}" and len(list(mine.iterdir())) == 1
    mine.rename(root / "moved")
    mine.symlink_to(root / "moved")  # as another account could have made it
    with pytest.raises(PermissionError, match="symbolic link"):
        _get([url], tmp_path / "images")
