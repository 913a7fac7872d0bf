"""`wjsentiment serve` end to end: one real server (LitServe, a tiny model) for the module, on a
free port of 127.0.0.1, with an API key, a small body limit and a short queue.

Every load sent is bounded in count and time. The SIGTERM test stops the server, so it is the
module's last test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("litserve")
requests = pytest.importorskip("requests")

from wjsentiment.labels import SENTIMENT_LABELS, ordinal_labels  # noqa: E402
from wjsentiment.serve.cli import add_serve_parser, run_serve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "test-key-0123456789"
AUTH = {"X-API-Key": KEY}
MAX_BODY_MB = 0.25
MAX_QUEUE = 4
#: Seconds any one request of these tests may take.
TIMEOUT = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _smooth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photo-like image: a colour gradient with noise (JPEG keeps it close)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def images(workdir) -> list[Path]:
    """Files that take each branch of the decoder: a JPEG large enough for draft mode, one
    turned by its EXIF orientation, a grayscale JPEG, a PNG with transparency, a small PNG."""
    rng = np.random.default_rng(0)
    paths = {"big.jpg": Image.fromarray(_smooth(rng, 240, 320)),
             "gray.jpg": Image.fromarray(_smooth(rng, 90, 100)[:, :, 0]),
             "alpha.png": Image.fromarray(np.dstack([_smooth(rng, 40, 50),
                                                     np.full((40, 50), 128, np.uint8)])),
             "small.png": Image.fromarray(_smooth(rng, 20, 20))}
    out = []
    for name, img in paths.items():
        img.save(workdir / name)
        out.append(workdir / name)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned 90 degrees
    Image.fromarray(_smooth(rng, 80, 120)).save(workdir / "turned.jpg", exif=exif)
    out.append(workdir / "turned.jpg")
    return out


@pytest.fixture(scope="module")
def model_dir(workdir) -> Path:
    from wjsentiment import SentimentClassifier

    rng = np.random.default_rng(1)
    X = np.stack([_smooth(rng, 32, 32) // (1 + i % 3) for i in range(10)])
    y = [SENTIMENT_LABELS[i % 5] for i in range(10)]
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=32, epochs=1,
                              calibration=None, verbose=0, random_state=0).fit(X, y)
    clf.save(workdir / "model")
    return workdir / "model"


@pytest.fixture(scope="module")
def model(model_dir):
    import wjsentiment

    return wjsentiment.load(model_dir, device="cpu")


@pytest.fixture(scope="module")
def server(model_dir, workdir):
    """The service, started once: (base URL, process). Its output goes to a file (a pipe
    nobody reads would fill and stop it)."""
    port = _free_port()
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - closed at the end
    env = {**os.environ, "WJS_TEST_KEY": KEY, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wjsentiment.serve", str(model_dir), "--port", str(port),
         "--device", "cpu", "--max-batch-size", "8", "--batch-timeout-ms", "100",
         "--max-body-mb", str(MAX_BODY_MB), "--max-queue", str(MAX_QUEUE),
         "--api-key-env", "WJS_TEST_KEY", "--timeout", "20"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        log.close()
        pytest.fail("the server did not become ready:\n"
                    + (workdir / "server.log").read_text()[-3000:])
    yield base, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()


@pytest.fixture
def base(server) -> str:
    url, proc = server
    assert proc.poll() is None, "the server has stopped (the SIGTERM test runs last)"
    return url


def _files(paths) -> list[tuple[str, tuple[str, bytes]]]:
    return [("file", (Path(p).name, Path(p).read_bytes())) for p in paths]


def _post(base: str, path: str = "/predict", headers=AUTH, **kwargs) -> requests.Response:
    return requests.post(f"{base}{path}", headers=headers, timeout=TIMEOUT, **kwargs)


# ------------------------------------------------------------------------------ answers
def test_answers_equal_predict_proba_and_predict(base, model, images):
    answer = _post(base, files=_files(images))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["decision_rule"] == model.decision_rule_
    expected = model.predict_proba([str(p) for p in images])
    labels = model.predict([str(p) for p in images])
    order = ordinal_labels(list(model.classes_))
    assert len(body["predictions"]) == len(images)
    for prediction, row, label in zip(body["predictions"], expected, labels):
        assert list(prediction["probabilities"]) == order  # ordinal order
        got = [prediction["probabilities"][str(c)] for c in model.classes_]
        np.testing.assert_allclose(got, row, atol=1e-4)
        assert prediction["label"] == label


def test_raw_body_and_concurrent_requests_are_batched(base, model, images):
    path = images[0]
    expected = model.predict_proba([str(path)])[0]

    def one(_):
        return _post(base, data=path.read_bytes(), headers={**AUTH,
                                                            "Content-Type": "image/jpeg"})

    before = _metric(base, "wjsentiment_batch_requests_count")
    with ThreadPoolExecutor(MAX_QUEUE) as pool:
        answers = list(pool.map(one, range(MAX_QUEUE)))
    assert [a.status_code for a in answers] == [200] * MAX_QUEUE
    for a in answers:
        got = a.json()["predictions"][0]["probabilities"]
        np.testing.assert_allclose([got[str(c)] for c in model.classes_], expected, atol=1e-4)
    batches = _metric(base, "wjsentiment_batch_requests_count") - before
    assert batches < MAX_QUEUE, "concurrent requests should have shared forward passes"


def _metric(base: str, name: str) -> float:
    text = requests.get(f"{base}/metrics", headers=AUTH, timeout=TIMEOUT).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(values)


# ---------------------------------------------------------------------------- bad input
def _bomb_png() -> bytes:
    """A PNG whose header claims 30000 x 30000 pixels (its data is a 1 x 1 image)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IHDR")
    data[start + 4:start + 12] = struct.pack(">II", 30000, 30000)
    data[start + 17:start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 17])))
    return bytes(data)


def _eps() -> bytes:
    """An EPS file: PIL reads it through Ghostscript, which the service must never run."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="EPS")
    return buffer.getvalue()


def test_uploads_decode_within_the_decoding_memory_budget(monkeypatch, images):
    from wjsentiment.images import decode
    from wjsentiment.serve.uploads import decode_upload

    held, hold = [], decode._DECODE_MEMORY.hold

    def recorded(nbytes):
        held.append(nbytes)
        return hold(nbytes)

    monkeypatch.setattr(decode._DECODE_MEMORY, "hold", recorded)
    small = images[3]  # small.png: 20 x 20 RGB
    pixels = decode_upload(small.read_bytes(), 32)
    assert held == [20 * 20 * 3]
    np.testing.assert_array_equal(pixels, decode.decode_image(small, 32))


def test_bad_images_get_415_or_422_naming_the_part(base, images):
    good = images[0].read_bytes()
    cases = [
        ({"data": b"not an image at all", "headers": {**AUTH, "Content-Type":
                                                      "application/octet-stream"}},
         415, "not an image"),
        ({"json": {"path": "/etc/passwd"}}, 415, "paths and URLs are not accepted"),
        ({"data": good[:300], "headers": {**AUTH, "Content-Type": "image/jpeg"}}, 422,
         "truncated"),
        ({"data": _bomb_png(), "headers": {**AUTH, "Content-Type": "image/png"}}, 422,
         "decompression bomb"),
        ({"files": [("file", ("a.jpg", good)), ("file", ("b.jpg", good[:300]))]}, 422,
         "part 2 ('b.jpg')"),
        ({"files": [("file", ("a.jpg", good)), ("file", ("c.txt", b"hello"))]}, 422,
         "part 2 ('c.txt')"),
        ({"files": [("other", ("a.jpg", good))]}, 422, "named 'file'"),
        ({"data": b"", "headers": {**AUTH, "Content-Type": "image/jpeg"}}, 422, "empty"),
        ({"data": _eps(), "headers": {**AUTH, "Content-Type": "application/postscript"}},
         415, "not an image"),
    ]
    for kwargs, status, words in cases:
        kwargs.setdefault("headers", AUTH)
        answer = _post(base, **kwargs)
        assert answer.status_code == status, (words, answer.text)
        assert words in answer.json()["detail"], answer.text


def test_body_over_the_limit_gets_413(base):
    big = b"\xff" * int(MAX_BODY_MB * 1e6 + 1000)
    answer = _post(base, data=big, headers={**AUTH, "Content-Type": "image/jpeg"})
    assert answer.status_code == 413 and "limit" in answer.json()["detail"]

    def chunks():  # no Content-Length: counted as it comes
        for _ in range(8):
            yield b"\xff" * 50_000

    answer = _post(base, data=chunks(), headers={**AUTH, "Content-Type": "image/jpeg"})
    assert answer.status_code == 413


def test_api_key(base, images):
    files = _files(images[:1])
    assert _post(base, headers={}, files=files).status_code == 401
    assert _post(base, headers={"X-API-Key": KEY + "x"}, files=files).status_code == 401
    wrong = _post(base, headers={"Authorization": "Bearer nope"}, files=files)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    assert _post(base, headers={"Authorization": f"Bearer {KEY}"},
                 files=files).status_code == 200
    assert _post(base, "/explain", headers={}, files=files).status_code == 401
    assert requests.get(f"{base}/metrics", timeout=TIMEOUT).status_code == 401
    for open_path in ("/health", "/", "/info", "/openapi.json"):
        assert requests.get(f"{base}{open_path}", timeout=TIMEOUT).status_code == 200


def test_health_info_and_metrics(base, model):
    info = requests.get(f"{base}/info", timeout=TIMEOUT).json()["model"]
    assert info["classes"] == ordinal_labels(list(model.classes_))
    assert info["api_key_required"] is True and info["heatmaps"] is True
    schema = requests.get(f"{base}/openapi.json", timeout=TIMEOUT).json()["paths"]
    body = schema["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*"} <= set(body) and "/explain" in schema
    text = requests.get(f"{base}/metrics", headers=AUTH, timeout=TIMEOUT).text
    for name in ('wjsentiment_requests_total{path="/predict",status="200"}',
                 "wjsentiment_request_duration_seconds_bucket", "wjsentiment_batch_images_bucket",
                 "wjsentiment_requests_in_flight "):
        assert name in text, name
    assert KEY not in text


def test_full_queue_gets_503_with_retry_after(base, images):
    files = _files(images)  # five heat maps: each request keeps the Grad-CAM worker busy

    def one(_):
        return _post(base, "/explain", files=files)

    with ThreadPoolExecutor(2 * MAX_QUEUE) as pool:
        answers = list(pool.map(one, range(2 * MAX_QUEUE)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= MAX_QUEUE
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"] == "1"


def _partial_upload(base: str, sent: bytes, declared: int) -> socket.socket:
    """A connection that has sent a /predict request's head and ``sent`` of a body of
    ``declared`` bytes, and sends no more."""
    port = int(base.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                 + f"X-API-Key: {KEY}\r\nContent-Length: {declared}\r\n\r\n".encode() + sent)
    return sock


def _wait_for(condition, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_stalled_body_gets_408_and_frees_its_place(base, images):
    data = images[0].read_bytes()
    with _partial_upload(base, data[:1000], len(data)) as sock:
        answer = b""
        while chunk := sock.recv(65536):  # the server answers within --timeout, then closes
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"408", answer[:500]
    assert "did not arrive within" in json.loads(body)["detail"]
    _wait_for(lambda: _metric(base, "wjsentiment_requests_in_flight") == 0,
              "the stalled request still holds its place in the queue")


def test_client_gone_before_the_answer_is_recorded_as_499(base, images, workdir):
    counted = 'wjsentiment_requests_total{path="/predict",status="%d"}'
    errors = _metric(base, counted % 500)
    gone = _metric(base, counted % 499)
    data = images[0].read_bytes()
    _partial_upload(base, data[:1000], len(data)).close()
    _wait_for(lambda: _metric(base, counted % 499) == gone + 1,
              "a request whose client went away was not counted as 499")
    assert _metric(base, counted % 500) == errors
    assert "ClientDisconnect" not in (workdir / "server.log").read_text()  # not a crash


# ------------------------------------------------------------------------------ the page
CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_page_in_headless_chromium(base, model, images):
    sync_api = pytest.importorskip("playwright.sync_api")
    picture = images[0]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page()
            asked = []
            page.on("request", lambda r: asked.append(r.url))
            page.goto(base + "/", timeout=TIMEOUT * 1000)
            page.wait_for_function("document.getElementById('model').textContent"
                                   ".includes('decision rule')", timeout=TIMEOUT * 1000)
            assert page.is_visible("#key")  # the service has a key: the page asks for it
            page.fill("#key", KEY)
            page.set_input_files("#file", str(picture))
            page.wait_for_function("document.getElementById('label').textContent !== ''",
                                   timeout=TIMEOUT * 1000)
            shown = page.text_content("#label")
            bars = page.eval_on_selector_all("#bars .bar", "rows => rows.map(r => "
                                             "r.dataset.class)")
            page.wait_for_function("(document.getElementById('heatmap').src || '')"
                                   ".startsWith('data:image/png')", timeout=TIMEOUT * 1000)
            status = page.text_content("#status")
        finally:
            browser.close()
    assert shown == model.predict([str(picture)])[0]
    assert bars == ordinal_labels(list(model.classes_))
    assert status == ""
    assert all(url.startswith(base) or url.startswith("data:") or url.startswith("blob:")
               for url in asked), asked


# ------------------------------------------------------------------------ the benchmark
def test_benchmark_smoke_against_this_server(base, server, model_dir, workdir):
    out = workdir / "bench.json"
    env = {**os.environ, "WJS_TEST_KEY": KEY, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_serve.py"), "--smoke", "--url", base,
         "--server-pid", str(server[1].pid), "--model", str(model_dir), "--api-key-env",
         "WJS_TEST_KEY", "--json", str(out), "--data-dir", str(workdir / "bench-data")],
        env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for row in result["load"]:
        assert row["images_per_s"] > 0 and row["p50_ms"] <= row["p99_ms"]
        assert row["errors"] == 0
    faults = result["faults"]
    assert faults["status_5xx"] == 0 and faults["good_answered"] == faults["good_sent"]


# ----------------------------------------------------------------------- the subcommand
def test_subcommand_parses_and_fails_fast_on_a_missing_model(tmp_path):
    parser = argparse.ArgumentParser(prog="wjsentiment")
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", str(tmp_path / "none"), "--workers", "2"])
    assert args.workers == 2 and args.max_body_mb == 20.0 and args.heatmaps
    started = time.monotonic()
    with pytest.raises(FileNotFoundError, match="No model at"):
        run_serve(args)
    assert time.monotonic() - started < 5
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "m", "--workers", "0"])


@pytest.mark.parametrize("options, words", [
    (["--port", "80"], "argument --port: expected an integer from 1024 to 65535"),
    (["--port", "70000"], "argument --port"),
    (["--batch-timeout-ms", "-1"], "argument --batch-timeout-ms"),
    (["--device", "cuda:x"], "--device must be one of auto, cpu, cuda, cuda:N"),
    (["--batch-timeout-ms", "5000", "--timeout", "2"], "--batch-timeout-ms must be"),
])
def test_bad_option_values_exit_2_with_the_usage_naming_the_option(model_dir, options, words,
                                                                    capsys):
    from wjsentiment.cli import main

    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(model_dir), *options])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: wjsentiment serve") and words in err, err
    assert "_ms" not in err and "Traceback" not in err
    assert time.monotonic() - started < 5  # refused before the model is loaded


def test_output_options_are_accepted():
    from wjsentiment.cli import parse_args

    assert parse_args(["serve", "m", "-v"]).verbose == 2
    assert parse_args(["serve", "m", "--quiet"]).verbose == 0


def test_a_non_ascii_api_key_is_refused_at_start_up(monkeypatch, model_dir):
    from wjsentiment.exceptions import InputError
    from wjsentiment.serve import create_server

    monkeypatch.setenv("WJS_ODD_KEY", "clé-secrète")
    with pytest.raises(InputError, match="WJS_ODD_KEY.*outside ASCII") as refused:
        create_server(model_dir, api_key_env="WJS_ODD_KEY", device="cpu")
    assert "secr" not in str(refused.value)  # the key itself is never shown


# ------------------------------------------------------------------ last: SIGTERM drains
def test_sigterm_finishes_requests_in_flight_then_exits_0(server, base, images):
    url, proc = server
    files = _files(images)
    with ThreadPoolExecutor(MAX_QUEUE) as pool:
        pending = [pool.submit(_post, base, "/explain", files=files) for _ in range(MAX_QUEUE)]
        # One in work and at least one waiting when SIGTERM comes (all of them, unless the
        # first ones are answered before the last arrive on a busy machine).
        deadline, seen = time.monotonic() + TIMEOUT, 0
        while (seen := _metric(base, "wjsentiment_requests_in_flight")) < 2:
            done = [p.result().status_code for p in pending if p.done()]
            assert time.monotonic() < deadline and len(done) < MAX_QUEUE - 1, \
                f"never two requests in flight together (in flight {seen}, answered {done})"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        answers = [p.result(timeout=TIMEOUT) for p in pending]
    assert [a.status_code for a in answers] == [200] * MAX_QUEUE
    assert all(len(a.json()["explanations"]) == len(images) for a in answers)
    assert proc.wait(timeout=60) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=5)
