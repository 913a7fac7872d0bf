"""Smoke runs of the benchmark scripts at a tiny size: they run and report their fields.

Speed is never asserted here; benchmarks/RESULTS.md holds the measured numbers.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Import a benchmark module by name; images go to one shared temporary folder."""
    data_dir = tmp_path_factory.mktemp("bench-data")
    sys.path.insert(0, str(BENCH_DIR))

    def load(name: str):
        return importlib.import_module(name)

    load.data_dir = str(data_dir)
    yield load
    sys.path.remove(str(BENCH_DIR))
    from wjsentiment.images import clear_image_cache
    from wjsentiment.models import clear_feature_cache

    clear_image_cache()
    clear_feature_cache()


def run(bench, name: str, tmp_path, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    results = bench(name).main(["--smoke", "--device", "cpu", "--data-dir", bench.data_dir,
                                "--json", str(out), *extra])
    written = json.loads(out.read_text())
    assert written["benchmark"] == results["benchmark"]
    assert written["machine"]["cpu_cores"] >= 1
    return written


def test_flickr_like_makes_distinct_jpegs_and_reuses_them(bench, tmp_path):
    from PIL import Image

    flickr = bench("flickr_like")
    made = flickr.make_flickr_like(6, tmp_path, verbose=False)
    assert len(made.paths) == 6 and set(made.labels) <= set(flickr.LABELS)
    sizes = set()
    pixels = []
    for path in made.paths:
        with Image.open(path) as img:
            assert img.format == "JPEG"
            sizes.add(tuple(sorted(img.size)))
            pixels.append(img.convert("RGB").tobytes())
    assert sizes == {(375, 500)}
    assert len(set(pixels)) == 6
    mtimes = [Path(p).stat().st_mtime_ns for p in made.paths]
    again = flickr.make_flickr_like(8, tmp_path, verbose=False)
    assert again.paths[:6] == made.paths
    assert [Path(p).stat().st_mtime_ns for p in made.paths] == mtimes


def test_bench_decode_smoke(bench, tmp_path, capsys):
    res = run(bench, "bench_decode", tmp_path)
    methods = [r["method"] for r in res["rows"]]
    assert len(methods) == 4 and methods[0].startswith("plain PIL loop")
    assert all(r["images_per_second"] > 0 for r in res["rows"])
    assert res["speedup"] == pytest.approx(res["rows"][-1]["speedup_vs_baseline"])
    assert "speedup_vs_baseline" in capsys.readouterr().out


def test_bench_fit_smoke(bench, tmp_path, capsys):
    res = run(bench, "bench_fit", tmp_path)
    assert res["complete"] is True
    (one,) = res["runs"]
    assert one["library"]["n_images"] == one["reference"]["n_images"] == 16
    assert len(one["library"]["images_per_second"]) == 1
    assert one["bare_step"]["images_per_second"] > 0
    assert one["steady_speedup"] > 0 and one["library_fraction_of_bare"] > 0
    out = capsys.readouterr().out
    assert "reference (DataLoader, fp32)" in out and "bare train step" in out
    assert "[bench_fit test_resnet 32px] batch 8 library:" in out


def test_bench_predict_smoke(bench, tmp_path):
    res = run(bench, "bench_predict", tmp_path)
    assert [r["pipeline"].split()[0] for r in res["rows"]] == ["predict_proba"] * 2 + ["bare"]
    assert res["settings"]["predict_batch_size"] >= 8
    assert res["warm_fraction_of_bare"] > 0


def test_bench_export_smoke(bench, tmp_path):
    pytest.importorskip("onnxruntime")
    res = run(bench, "bench_export", tmp_path)
    assert [r["pipeline"] for r in res["rows"]] == ["predict_proba (torch)",
                                                    "onnxruntime (load_onnx)"]
    assert all(r["images_per_second"] > 0 and r["batch"] == 8 for r in res["rows"])
    assert res["onnx_over_torch"] == pytest.approx(
        res["rows"][1]["images_per_second"] / res["rows"][0]["images_per_second"])
    assert res["max_abs_probability_gap"] <= 1e-4


def test_bench_gridsearch_smoke(bench, tmp_path):
    res = run(bench, "bench_gridsearch", tmp_path)
    assert res["library"]["best_params"]["head"] in ("linear", "mlp")
    assert len(res["library"]["mean_scores"]) == 4 == len(res["hand"]["mean_scores"])
    assert res["speedup"] > 0 and isinstance(res["target_met"], bool)


def test_bench_memory_smoke_spills_in_a_child_process(bench, tmp_path):
    res = run(bench, "bench_memory", tmp_path)
    (one,) = res["runs"]
    assert one["n_images"] == 16 and one["budget_bytes"] == 0
    assert one["spilled"] is True and one["store_ram_bytes"] == 0
    assert one["ru_maxrss_bytes"] > 0 and one["peak_rss_anon_bytes"] > 0


def test_gpu_check_smoke_on_cpu(bench, tmp_path):
    res = run(bench, "gpu_check", tmp_path)
    assert res["complete"] is True
    (check,) = res["checks"]
    assert check["backbone"] == "test_resnet"
    assert check["max_abs_gap_bf16_vs_cpu"] == pytest.approx(0.0, abs=1e-6)
    assert check["argmax_agreement_bf16_vs_cpu"] == 1.0
    assert check["predict_images_per_second"] > 0


def test_profile_fit_smoke_writes_a_table(bench, tmp_path):
    out = tmp_path / "profile.txt"
    text = bench("profile_fit").main(["--smoke", "--device", "cpu", "--data-dir", bench.data_dir,
                                      "--out", str(out)])
    assert out.read_text().strip() == text.strip()
    assert "self_cpu_time_total" in text and "aten::" in text


def test_run_gpu_script_is_valid_bash():
    script = BENCH_DIR / "run_gpu.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    body = script.read_text()
    for name in ("bench_fit.py", "bench_predict.py", "gpu_check.py", "profile_fit.py"):
        assert name in body


def test_bench_quality_smoke(bench, tmp_path):
    cache = tmp_path / "cache"
    res = run(bench, "bench_quality", tmp_path, "--cache-dir", str(cache),
              "--recipes", "prior", "logreg", "ensemble")
    rows = {r["recipe"]: r for r in res["rows"]}
    assert {"prior", "logreg", "ensemble", "ensemble/lite0", "ensemble/lite1"} <= set(rows)
    pairs = {p["pair"]: p for p in res["pairs"]}
    assert set(pairs) == {"ensemble - ensemble/lite0", "ensemble - ensemble/lite1"}
    assert all(p["folds"] == 2 for p in pairs.values())
    for member in ("lite0", "lite1"):  # same folds: the mean difference is the difference
        assert pairs[f"ensemble - ensemble/{member}"]["log_loss"] == pytest.approx(
            rows["ensemble"]["log_loss"] - rows[f"ensemble/{member}"]["log_loss"])
    assert "macro_f1_vs_anchor" in rows["ensemble"] and "macro_f1_vs_anchor" not in rows["logreg"]
    assert all(r["folds"] == 2 for r in rows.values())
    assert 0.0 <= rows["ensemble"]["ece_floor"] <= 1.0
    assert "uncalibrated_log_loss" in rows["ensemble"] and "uncalibrated_ece" in rows["ensemble"]
    rules = {r["recipe"]: r for r in res["decision_rules"]}
    assert set(rules) == set(rows)
    ensemble = rules["ensemble"]  # the demo's ensemble trains balanced: predict is "balanced"
    assert ensemble["balanced_macro_f1"] == pytest.approx(rows["ensemble"]["macro_f1"])
    assert ensemble["diff_macro_f1"] == pytest.approx(
        ensemble["balanced_macro_f1"] - ensemble["argmax_macro_f1"])
    cached = sorted(p.name for p in (cache / "smoke").iterdir())
    assert len(cached) == 6  # three recipes x two folds, each written once
    again = bench("bench_quality").main(["--smoke", "--cache-dir", str(cache), "--recipes",
                                         "prior", "logreg", "ensemble"])
    assert again["rows"] == res["rows"]  # read back from the cache, not refitted


def test_bench_scale_smoke(bench, tmp_path):
    res = run(bench, "bench_scale", tmp_path, "--gloo-fit")
    assert res["same_result"] is True
    assert res["n_jobs_1"]["best_params"] == res["dask"]["best_params"]
    assert res["dask"]["seconds"] > 0 and res["dask"]["startup_seconds"] > 0
    assert res["ratio"] == pytest.approx(res["n_jobs_1"]["seconds"] / res["dask"]["seconds"])
    assert res["warm_ratio"] == pytest.approx(res["n_jobs_1"]["warm_seconds"]
                                              / res["dask"]["warm_seconds"])
    gloo = res["gloo_fit"]
    one, two = gloo["one_process"], gloo["two_processes"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["samples"] == two["samples"] > 0  # the same images, one epoch each
    assert one["history"][0]["samples"] == two["history"][0]["samples"]
    assert gloo["ratio"] == pytest.approx(two["images_per_second"] / one["images_per_second"])
    assert one["fit_seconds"] > 0 and two["launch_seconds"] > two["fit_seconds"]
