"""Tests for wjsentiment.datasets.download against a local HTTP server (no internet)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from datasets_server import (
    LocalImageServer,
    Reply,
    assert_clean_image_dir,
    emoji_png,
    make_jpeg,
)

from wjsentiment.datasets import DownloadReport, download_images
from wjsentiment.datasets import download as download_module

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
    assert (tmp_path / "a.png").read_bytes() == PNG
    assert (tmp_path / "b.jpg").read_bytes() == JPEG
    assert assert_clean_image_dir(tmp_path) == ["a.png", "b.jpg"]
    assert "2 downloaded" in repr(report)


def test_404_is_not_retried_and_lands_in_manifest(server, tmp_path):
    url = server.add("/gone.jpg", Reply(404, b"no", content_type="text/plain"))
    report = _get([url], tmp_path, retries=3)
    assert list(report.failed) == [url]
    assert "404" in report.failed[url]
    assert server.hits["/gone.jpg"] == 1
    assert not (tmp_path / "gone.jpg").exists()
    with open(tmp_path / "_failures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["url"], r["filename"]) for r in rows] == [(url, "gone.jpg")]
    assert "404" in rows[0]["reason"]


def test_500_then_200_is_retried(server, tmp_path):
    url = server.add("/flaky.png", Reply(500, b"oops", content_type="text/plain"), Reply(body=PNG))
    report = _get([url], tmp_path, retries=2)
    assert report.ok == [url]
    assert server.hits["/flaky.png"] == 2
    assert (tmp_path / "flaky.png").read_bytes() == PNG


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
    assert not (tmp_path / "slow.png").exists()
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
    assert (tmp_path / "old.png").read_bytes() == PNG
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

    def open_url(url, timeout):
        response = real_open(url, timeout)
        return Interrupting(response) if url == urls[2] else response

    monkeypatch.setattr(download_module, "_open_url", open_url)
    with pytest.raises(KeyboardInterrupt):
        _get(urls, tmp_path, n_jobs=1)
    assert assert_clean_image_dir(tmp_path) == ["0.jpg", "1.jpg"]

    monkeypatch.setattr(download_module, "_open_url", real_open)
    report = _get(urls, tmp_path, n_jobs=1)
    assert report.skipped == urls[:2]
    assert report.ok == urls[2:]
    assert [server.hits[f"/k/{i}.jpg"] for i in range(5)] == [1, 1, 2, 1, 1]
    assert assert_clean_image_dir(tmp_path) == [f"{i}.jpg" for i in range(5)]


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


def test_killed_process_leaves_only_whole_files_and_next_run_cleans(server, tmp_path):
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
        while not any(n.startswith(".2.jpg.") for n in os.listdir(tmp_path)):
            assert proc.poll() is None, "the download process ended before it was killed"
            assert time.monotonic() < deadline, "no partial download appeared"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    names = os.listdir(tmp_path)
    assert "2.jpg" not in names and "3.jpg" not in names
    assert sorted(n for n in names if not n.startswith(".")) == ["0.jpg", "1.jpg"]

    report = _get(urls, tmp_path, n_jobs=1)
    assert report.skipped == urls[:2]
    assert report.ok == urls[2:]
    assert server.hits["/p/0.jpg"] == 1 and server.hits["/p/1.jpg"] == 1
    assert assert_clean_image_dir(tmp_path) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert (tmp_path / "2.jpg").read_bytes() == body


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
    assert "we_ird_name.png" in names
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
