"""Smoke runs of the decoder-variant table of bench_decode.py and of bench_predict.py --calls:
they run at a tiny size and report their fields. Speed is never asserted."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from wjsentiment.images.decode import simplejpeg

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
REPO = BENCH_DIR.parent


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("bench-data"))
    sys.path.insert(0, str(BENCH_DIR))
    yield lambda name, *args: importlib.import_module(name).main(
        ["--smoke", "--device", "cpu", "--data-dir", data_dir, *args])
    sys.path.remove(str(BENCH_DIR))
    from wjsentiment.images import clear_image_cache

    clear_image_cache()


def test_bench_decode_compares_each_decoder_with_todays(bench, tmp_path):
    out = tmp_path / "decode.json"
    res = bench("bench_decode", "--tables", "decoders", "--workers", "2", "--json", str(out))
    assert json.loads(out.read_text())["decoder_rows"] == res["decoder_rows"]
    rows = {r["method"]: r for r in res["decoder_rows"]}
    today = res["decoder_rows"][0]
    assert today["method"] == "PIL draft, threads (today)" and today["ratio"] == 1.0
    assert {"PIL draft, processes", "store.add, PIL"} <= set(rows)
    assert rows["store.add, PIL"]["mad"] == 0.0  # the same decoder: the same pixels
    assert all(r["workers"] == 2 and r["images_per_second"] > 0 for r in rows.values())
    assert res["process_pool_startup_seconds"] > 0
    assert res["load_average_1m"]["before"] is not None and res["rows"] == []
    if simplejpeg is not None:
        fast = rows["simplejpeg, threads"]
        assert fast["decoder"] == "simplejpeg" and 0 < fast["mad"] < 2
        assert rows["store.add, simplejpeg (default)"]["mad"] == fast["mad"]


def test_bench_predict_calls_compares_two_checkouts(bench, tmp_path):
    out = tmp_path / "calls.json"
    res = bench("bench_predict", "--calls", "--compare-checkout", str(REPO), "--json", str(out))
    parts = [r["part"] for r in res["rows"]]
    assert parts[0] == "total" and "before_first_forward" in parts and "store_add" in parts
    assert set(res["libraries"]) == {"before", "after"}
    assert all(lib.startswith(str(REPO)) for lib in res["libraries"].values())
    total = res["rows"][0]
    assert total["before_wall_ms"] > 0 and total["after_cpu_ms"] > 0
    assert total["ratio_wall_ms"] == pytest.approx(total["after_wall_ms"] / total["before_wall_ms"])
    assert json.loads(out.read_text())["benchmark"] == "predict_calls"


def test_run_gpu_script_measures_decoding_within_its_budget():
    import re

    body = (BENCH_DIR / "run_gpu.sh").read_text()
    limits = [int(m) for m in re.findall(r"^step (\d+) ", body, flags=re.MULTILINE)]
    assert sum(limits) <= 570  # 9.5 minutes: under the 10-minute command limit
    assert "--tables decoders" in body and "--tables device --n-images 4096" in body
    assert f"add up to {sum(limits)} s" in body
