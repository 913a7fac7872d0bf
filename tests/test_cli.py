"""End-to-end tests of the ``wjsentiment`` command line on tiny emoji data (no network)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets_server import LocalImageServer, Reply, emoji_png

from wjsentiment import cli
from wjsentiment.datasets import crowdflower
from wjsentiment.ensemble import ENSEMBLE_FILE
from wjsentiment.explain import HEATMAP_SIDE

REPO = Path(__file__).resolve().parents[1]
EMOJI = REPO / "wjsentiment" / "datasets" / "data" / "emoji_sentiment"
CLASSES = ["Negative", "Neutral", "Positive"]
PER_CLASS = 4


def run_cli(*args: str, cwd: Path | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m wjsentiment ARGS`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # One thread: on a busy two-core machine two OpenMP threads per process can slow torch down
    # many times over; one thread per process is fast either way.
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "-m", "wjsentiment", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """In-process fits use one thread too (see run_cli)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def emoji_folder(tmp_path_factory) -> Path:
    """An ImageFolder tree: 4 twitter emoji PNGs in each of 3 sentiment class folders."""
    root = tmp_path_factory.mktemp("emoji_folder")
    table = pd.read_csv(EMOJI / "labels.csv")
    table = table[table["style"] == "twitter"]
    for label in CLASSES:
        (root / label.lower()).mkdir()
        for image in table.loc[table["label"] == label, "image"].head(PER_CLASS):
            (root / label.lower() / Path(image).name).write_bytes((EMOJI / image).read_bytes())
    return root


@pytest.fixture(scope="module")
def fitted(emoji_folder, tmp_path_factory) -> Path:
    """``wjsentiment fit`` on the tiny folder; returns its --out folder."""
    out = tmp_path_factory.mktemp("fit") / "run"
    result = run_cli("fit", "--folder", emoji_folder, "--out", out, "--weights", "none",
                     "--image-size", "32", "--epochs", "2", "--batch-size", "4",
                     "--random-state", "0", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "model saved to" in result.stdout
    return out


# ------------------------------------------------------------------------------------ fit
def test_fit_writes_model_and_curves(fitted):
    config = json.loads((fitted / "model" / "config.json").read_text())
    assert config["estimator"] == "SentimentClassifier"
    assert config["classes"]["values"] == CLASSES
    assert config["params"]["image_size"] == 32
    assert config["weights_source"] == "random initialisation"
    assert len(config["history"]) == 2
    assert (fitted / "model" / "model.safetensors").stat().st_size > 0
    assert (fitted / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_from_csv_in_process(emoji_folder, tmp_path, capsys):
    rows = [(f"{label.lower()}/{p.name}", label) for label in CLASSES
            for p in sorted((emoji_folder / label.lower()).iterdir())]
    pd.DataFrame(rows, columns=["file", "sentiment"]).to_csv(tmp_path / "labels.csv", index=False)
    status = cli.main(["fit", "--csv", str(tmp_path / "labels.csv"), "--image-col", "file",
                       "--label-col", "sentiment", "--root", str(emoji_folder), "--out",
                       str(tmp_path / "out"), "--weights", "none", "--image-size", "32",
                       "--epochs", "1", "--finetune", "head", "--head", "mlp", "--quiet"])
    assert status == 0
    config = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert config["params"]["finetune"] == "head"
    assert config["params"]["head"] == "mlp"
    assert "1 epoch(s)" in capsys.readouterr().out


def test_fit_defaults_match_the_estimator():
    from wjsentiment import SentimentClassifier

    args = cli.parse_args(["fit", "--folder", "x", "--out", "y"])
    params = SentimentClassifier().get_params()
    for name in ("backbone", "weights", "head", "finetune", "image_size", "epochs",
                 "batch_size", "lr", "weight_decay", "validation_fraction", "device"):
        assert getattr(args, name) == params[name], name


def test_help_does_not_import_torch_and_fit_help_shows_the_defaults():
    code = ("import sys, contextlib, io; from wjsentiment.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--help'])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    text = run_cli_help("fit")
    assert "(default: resnet18)" in text and "(default: 32)" in text


def run_cli_help(command: str) -> str:
    buffer = io.StringIO()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(buffer):
        cli.main([command, "--help"])
    return buffer.getvalue()


# -------------------------------------------------------------------------------- predict
def read_predictions(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_folder_and_file_to_csv(fitted, emoji_folder, tmp_path):
    one_file = next((emoji_folder / "neutral").iterdir())
    output = tmp_path / "out" / "predictions.csv"
    result = run_cli("predict", fitted / "model", emoji_folder, one_file, "--output", output,
                     "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    rows = read_predictions(output)
    assert list(rows[0]) == ["path", "label", "rule", *[f"proba_{c}" for c in CLASSES], "error"]
    assert len(rows) == len(CLASSES) * PER_CLASS + 1
    assert all(r["error"] == "" for r in rows)
    assert rows[-1]["path"] == str(one_file)
    assert {Path(r["path"]).parent.name for r in rows[:-1]} == {c.lower() for c in CLASSES}
    proba = np.array([[float(r[f"proba_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    labels = [r["label"] for r in rows]
    assert labels == [CLASSES[k] for k in proba.argmax(axis=1)]
    assert "Wrote 13 predictions" in result.stderr
    assert sorted(os.listdir(output.parent)) == ["predictions.csv"]  # no temporary file left


def test_predict_to_stdout(fitted, emoji_folder, capsys):
    files = sorted(str(p) for p in (emoji_folder / "positive").iterdir())[:2]
    assert cli.main(["predict", str(fitted / "model"), *files, "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("path,label,rule,proba_Negative")
    assert [line.split(",")[0] for line in lines[1:]] == files


def test_predict_writes_a_row_for_every_input_with_an_error_column(fitted, emoji_folder,
                                                                   tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_text("this is not a PNG")
    good = sorted((emoji_folder / "positive").iterdir())[:3]
    output = tmp_path / "predictions.csv"
    inputs = [good[0], bad, good[1], good[2]]  # the bad image shares a chunk with good ones
    status = cli.main(["predict", str(fitted / "model"), *map(str, inputs), "-o", str(output),
                       "--batch-size", "2"])
    err = capsys.readouterr().err
    assert status == 0, err
    rows = read_predictions(output)
    assert list(rows[0]) == ["path", "label", "rule", *[f"proba_{c}" for c in CLASSES], "error"]
    assert [r["path"] for r in rows] == list(map(str, inputs))
    assert [bool(r["error"]) for r in rows] == [False, True, False, False]
    assert rows[1]["error"] == "not an image file PIL can read"
    assert rows[1]["label"] == "" and all(rows[1][f"proba_{c}"] == "" for c in CLASSES)
    for row in (rows[0], rows[2], rows[3]):
        proba = [float(row[f"proba_{c}"]) for c in CLASSES]
        assert row["label"] == CLASSES[int(np.argmax(proba))]
        assert abs(sum(proba) - 1.0) < 1e-4
    assert "1 of 4 image(s) could not be read" in err and "broken.png" in err
    assert "on_bad_image" not in err + output.read_text()


def test_predict_with_no_readable_image_exits_1_and_keeps_old_output(fitted, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_text("this is not a PNG")
    output = tmp_path / "predictions.csv"
    output.write_text("old content\n")
    status = cli.main(["predict", str(fitted / "model"), str(bad), "-o", str(output),
                       "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("wjsentiment predict: error: none of the 1 image(s) could be read")
    assert "broken.png" in err and "on_bad_image" not in err
    assert len(err.strip().splitlines()) == 1
    assert output.read_text() == "old content\n"
    assert sorted(os.listdir(tmp_path)) == ["broken.png", "predictions.csv"]


@pytest.mark.parametrize("damage", [
    lambda model: (model / "model.safetensors").write_bytes(b""),
    lambda model: (model / "model.safetensors").write_bytes(
        (model / "model.safetensors").read_bytes()[:1000]),
    lambda model: (model / "config.json").write_text("{not json"),
    lambda model: (model / "config.json").write_text(
        (model / "config.json").read_text().replace('"n_classes": 3', '"n_classes": "3"')),
])
def test_a_damaged_model_is_one_line_and_exit_1(fitted, emoji_folder, tmp_path, capsys, damage):
    model = Path(shutil.copytree(fitted / "model", tmp_path / "model"))
    damage(model)
    status = cli.main(["predict", str(model), str(emoji_folder)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"wjsentiment predict: error: Cannot load '{model}")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_predict_help_documents_the_exit_statuses():
    text = run_cli_help("predict")
    assert "exit status:" in text and "error" in text
    assert "0  predictions written" in text and "1  nothing written" in text


def test_fit_skip_takes_a_folder_holding_a_non_image_jpg(emoji_folder, tmp_path):
    folder = Path(shutil.copytree(emoji_folder, tmp_path / "photos"))
    (folder / "positive" / "notes.jpg").write_text("not a JPEG")
    args = ["fit", "--folder", str(folder), "--weights", "none", "--image-size", "32",
            "--epochs", "1", "--finetune", "head", "--quiet"]
    assert cli.main([*args, "--out", str(tmp_path / "raise")]) == 1  # the loader names it
    with pytest.warns(UserWarning, match="Skipped 1 of 13"):
        status = cli.main([*args, "--out", str(tmp_path / "skip"), "--on-bad-image", "skip"])
    assert status == 0
    config = json.loads((tmp_path / "skip" / "model" / "config.json").read_text())
    assert [Path(s[1].strip("'")).name for s in config["skipped"]] == ["notes.jpg"]


def test_missing_model_exits_1_naming_it(emoji_folder, tmp_path, capsys):
    status = cli.main(["predict", str(tmp_path / "no_model_here"), str(emoji_folder)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("wjsentiment predict: error:")
    assert "no_model_here" in err
    assert "Traceback" not in err


def test_missing_image_exits_1_naming_it(fitted, tmp_path, capsys):
    status = cli.main(["predict", str(fitted / "model"), str(tmp_path / "ghost.jpg")])
    err = capsys.readouterr().err
    assert status == 1
    assert "wjsentiment predict: error:" in err and "ghost.jpg" in err


def test_empty_folder_exits_1(fitted, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["predict", str(fitted / "model"), str(tmp_path / "empty")]) == 1
    assert "holds no image files" in capsys.readouterr().err


def test_verbose_failure_prints_traceback(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "m"), str(tmp_path / "x.png"), "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("wjsentiment predict: error:")


# ------------------------------------------------------------- predict: lists, streaming, resume
@pytest.fixture
def six_images(emoji_folder, tmp_path) -> list[Path]:
    """Six emoji PNGs copied into tmp_path/images, in sorted order."""
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted(emoji_folder.rglob("*.png"))[:6]
    return [Path(shutil.copy(src, folder / f"{i}_{src.name}")) for i, src in enumerate(sources)]


def test_predict_reads_csv_and_txt_lists_of_paths(fitted, six_images, tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    # A CSV with the paths in column "file", relative to the CSV's folder, one cell empty.
    pd.DataFrame({"id": [1, 2, 3], "file": [f"../images/{six_images[0].name}", "",
                                            f"../images/{six_images[1].name}"]}
                 ).to_csv(lists / "batch.csv", index=False)
    # A text file of absolute paths, one a line, with a blank line.
    (lists / "more.txt").write_text(f"{six_images[2]}\n\n{six_images[3]}\n")
    out = tmp_path / "predictions.csv"
    status = cli.main(["predict", str(fitted / "model"), str(lists / "batch.csv"),
                       str(lists / "more.txt"), "--path-col", "file", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 0, err
    rows = read_predictions(out)
    assert [Path(r["path"]).resolve() for r in rows] == [p.resolve() for p in six_images[:4]]
    assert all(r["error"] == "" and r["label"] in CLASSES for r in rows)
    assert "Left out 2 empty entries" in err and "Wrote 4 predictions" in err


def test_predict_csv_list_without_the_path_column_exits_1(fitted, tmp_path, capsys):
    (tmp_path / "list.csv").write_text("file\na.png\n")
    status = cli.main(["predict", str(fitted / "model"), str(tmp_path / "list.csv")])
    err = capsys.readouterr().err
    assert status == 1
    assert "--path-col 'path' is not a column of" in err and "columns: file" in err


def test_predict_streams_chunks_and_keeps_no_decoded_images(fitted, six_images, tmp_path,
                                                            monkeypatch):
    """Each chunk is written before the next is read, and its decoded images are let go."""
    from wjsentiment.images import get_store
    from wjsentiment.scale import stream

    out = tmp_path / "predictions.csv"
    seen = []  # (rows in the file, images held by the decoded-image store) as a chunk starts
    predict_frame = stream.predict_frame

    def watched(model, paths):
        seen.append((len(read_predictions(out)) if out.exists() else 0,
                     len(get_store(model.image_size, model.grayscale))))
        return predict_frame(model, paths)

    monkeypatch.setattr(stream, "predict_frame", watched)
    status = cli.main(["predict", str(fitted / "model"), *map(str, six_images), "--out",
                       str(out), "--batch-size", "2", "--quiet"])
    assert status == 0
    assert seen == [(0, 0), (2, 0), (4, 0)]
    assert len(read_predictions(out)) == 6


def test_predict_resume_continues_a_cut_file(fitted, six_images, tmp_path, capsys):
    args = ["predict", str(fitted / "model"), *map(str, six_images), "--batch-size", "2"]
    full = tmp_path / "full.csv"
    assert cli.main([*args, "--out", str(full), "--quiet"]) == 0
    lines = full.read_text().splitlines(keepends=True)
    # What a killed run leaves: the header, two complete rows, and a row cut mid-number.
    out = tmp_path / "predictions.csv"
    out.write_text("".join(lines[:3]) + lines[3][:len(lines[3]) // 2])
    assert cli.main([*args, "--out", str(out), "--resume"]) == 0
    assert out.read_text() == full.read_text()
    assert "Wrote 4 predictions" in capsys.readouterr().err
    # Run again: everything is there.
    assert cli.main([*args, "--out", str(out), "--resume"]) == 0
    assert "All 6 images are already in" in capsys.readouterr().err
    assert out.read_text() == full.read_text()


def test_predict_resume_into_another_models_file_exits_1(fitted, six_images, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    out.write_text("path,label,proba_cat,proba_dog,error\nx.png,cat,0.9,0.1,\n")
    status = cli.main(["predict", str(fitted / "model"), str(six_images[0]), "--out", str(out),
                       "--resume"])
    err = capsys.readouterr().err
    assert status == 1
    assert "does not start with the columns this model writes" in err
    assert out.read_text() == "path,label,proba_cat,proba_dog,error\nx.png,cat,0.9,0.1,\n"


def test_predict_resume_needs_out(fitted, six_images, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", str(fitted / "model"), str(six_images[0]), "--resume"])
    assert info.value.code == 2
    assert "--resume needs --out FILE" in capsys.readouterr().err


# ------------------------------------------------------------------------------- evaluate
def test_evaluate_prints_and_saves_report(fitted, emoji_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    status = cli.main(["evaluate", str(fitted / "model"), "--folder", str(emoji_folder),
                       "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "macro-F1" in captured.out
    report = json.loads((out / "report.json").read_text())
    assert report["n_samples"] == len(CLASSES) * PER_CLASS
    assert report["labels"] == CLASSES
    assert report["decision_rule"] == "argmax"  # the rule of the printed labels, recorded
    assert 0.0 <= report["accuracy"] <= 1.0
    assert np.array(report["confusion_matrix"]).sum() == len(CLASSES) * PER_CLASS
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_missing_folder_exits_1(fitted, tmp_path, capsys):
    status = cli.main(["evaluate", str(fitted / "model"), "--folder", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("wjsentiment evaluate: error:") and "nope" in err


# ------------------------------------------------------------------------ explain, export
def test_explain_writes_a_png_per_image_and_an_index(fitted, emoji_folder, tmp_path):
    from PIL import Image

    out = tmp_path / "why"
    one_file = next((emoji_folder / "neutral").iterdir())
    result = run_cli("explain", fitted / "model", emoji_folder / "positive", one_file,
                     "--out", out, "--batch-size", "3", "--quiet")
    assert result.returncode == 0, result.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == PER_CLASS + 1
    assert pngs[-1] == f"{PER_CLASS:04d}_{one_file.stem}.png"
    with Image.open(out / pngs[0]) as img:  # a square photo: a square map, HEATMAP_SIDE wide
        assert img.size == (HEATMAP_SIDE, HEATMAP_SIDE) and img.mode == "RGB"
    index = (out / "index.html").read_text()
    for name in pngs:
        assert f'src="{name}"' in index
    from wjsentiment import SentimentClassifier

    clf = SentimentClassifier.load(fitted / "model")
    proba = clf.predict_proba([str(one_file)])[0]
    assert f"<td>{CLASSES[proba.argmax()]}</td><td>{proba.max():.3f}</td>" in index
    assert f"Wrote {PER_CLASS + 1} heat maps" in result.stdout
    assert sorted(os.listdir(out)) == sorted([*pngs, "index.html"])  # no temporary files


def test_explain_target_and_bad_layer(fitted, emoji_folder, tmp_path, capsys):
    files = [str(p) for p in sorted((emoji_folder / "negative").iterdir())[:2]]
    assert cli.main(["explain", str(fitted / "model"), *files, "--out", str(tmp_path / "a"),
                     "--target", "Positive", "--quiet"]) == 0
    assert "<td>Positive</td></tr>" in (tmp_path / "a" / "index.html").read_text()
    status = cli.main(["explain", str(fitted / "model"), *files, "--out", str(tmp_path / "b"),
                       "--layer", "layer9", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "layer='layer9' is not a module" in err
    status = cli.main(["explain", str(fitted / "model"), *files, "--out", str(tmp_path / "c"),
                       "--target", "Happy", "--quiet"])
    assert status == 1 and "--target 'Happy' is not a class" in capsys.readouterr().err


def test_export_writes_onnx_that_predicts_as_the_model(fitted, emoji_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    from wjsentiment import SentimentClassifier
    from wjsentiment.export import load_onnx

    target = tmp_path / "served" / "model.onnx"
    result = run_cli("export", fitted / "model", "--out", target)
    assert result.returncode == 0, result.stderr
    assert f"to {target}" in result.stdout and "(3 classes)" in result.stdout
    files = sorted(str(p) for p in (emoji_folder / "neutral").iterdir())
    model = load_onnx(target)
    assert model.classes_.tolist() == CLASSES
    clf = SentimentClassifier.load(fitted / "model")
    assert np.abs(model.predict_proba(files) - clf.predict_proba(files)).max() <= 1e-4


def test_explain_and_export_help_do_not_import_torch():
    for command in ("explain", "export"):
        code = ("import sys, contextlib, io; from wjsentiment.cli import main\n"
                "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):"
                f"\n    main(['{command}', '--help'])\n"
                "print('torch' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == "False", command


# ------------------------------------------------------------------------------- download
@pytest.fixture
def server():
    with LocalImageServer() as srv:
        yield srv


def serve_crowdflower(monkeypatch, urls: list[str]) -> None:
    """Make fetch_image_sentiment see one row per URL (confidence 1.0, 0.7, 0.5, ...)."""
    n = len(urls)
    frame = pd.DataFrame({
        "unit_id": np.arange(1, n + 1, dtype=np.int64),
        "label": (["Positive", "Negative", "Neutral"] * n)[:n],
        "confidence": [1.0 - 0.3 * i for i in range(n)],
        "golden": [False] * n,
        "judgments": np.full(n, 3, dtype=np.int64),
        "url": urls,
    })
    monkeypatch.setattr(crowdflower, "_load_metadata", lambda: frame.copy())


def test_download_from_local_server(server, monkeypatch, tmp_path, capsys):
    serve_crowdflower(monkeypatch, [server.add("/a.png", Reply(body=emoji_png(0))),
                                    server.add("/b.png", Reply(body=emoji_png(1))),
                                    server.add("/gone.png", Reply(404, b"gone", "text/plain"))])
    status = cli.main(["download", "--data-home", str(tmp_path), "--n-jobs", "2",
                       "--timeout", "5", "--retries", "0"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "2 of 3 selected images are on disk" in captured.out
    assert "2 downloaded" in captured.err and "1 failed" in captured.err
    images = tmp_path / "crowdflower" / "images"
    assert sorted(p.name for p in images.glob("*.jpg")) == ["1.jpg", "2.jpg"]
    # --min-confidence with --no-download: nothing is fetched, what is on disk is counted.
    status = cli.main(["download", "--data-home", str(tmp_path), "--min-confidence", "0.9",
                       "--no-download"])
    assert status == 0
    assert "1 of 1 selected images are on disk" in capsys.readouterr().out
    assert server.hits["/a.png"] == 1


def test_download_deadline_abandons_a_trickling_file(server, monkeypatch, tmp_path, capsys):
    drip = Reply(body=emoji_png(0), chunk_size=1, chunk_delay=0.2)  # minutes for the file
    serve_crowdflower(monkeypatch, [server.add("/drip.png", drip)])
    start = time.monotonic()
    status = cli.main(["download", "--data-home", str(tmp_path), "--timeout", "2",
                       "--deadline", "1", "--retries", "0", "--quiet"])
    assert time.monotonic() - start < 1.0 + 2.0 + 2.0  # the deadline, one read, and slack
    assert status == 1
    assert "deadline of 1 s" in capsys.readouterr().err


def test_download_nothing_reachable_exits_1(server, monkeypatch, tmp_path, capsys):
    serve_crowdflower(monkeypatch, [server.add("/gone.png", Reply(404, b"gone", "text/plain"))])
    status = cli.main(["download", "--data-home", str(tmp_path), "--retries", "0", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("wjsentiment download: error: no image could be downloaded")
    assert "gone.png" in err


def test_download_no_download_touches_nothing(tmp_path, capsys):
    status = cli.main(["download", "--data-home", str(tmp_path), "--no-download",
                       "--min-confidence", "0.66"])
    assert status == 0
    assert "0 of 13150 selected images are on disk" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_fit_crowdflower_without_images_exits_1(tmp_path, capsys):
    status = cli.main(["fit", "--crowdflower", "--data-home", str(tmp_path), "--out",
                       str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 1
    assert "no CrowdFlower images on disk" in err and "wjsentiment download" in err


# ----------------------------------------------------------------------------------- demo
def test_demo_smoke_subprocess(tmp_path):
    result = run_cli("demo", "--smoke", "--out", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "macro-F1" in result.stdout
    assert "Backbone weights of lite0:" in result.stdout
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["smoke"] is True
    assert (tmp_path / "demo" / "model" / ENSEMBLE_FILE).is_file()


# ------------------------------------------------------------------------- usage and help
@pytest.mark.parametrize("command", [[], ["download"], ["fit"], ["predict"], ["evaluate"],
                                     ["demo"], ["explain"], ["export"]])
def test_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: wjsentiment {' '.join(command)}".rstrip())
    assert "examples:" in out


def test_version(capsys):
    from wjsentiment import __version__

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"wjsentiment {__version__}"


@pytest.mark.parametrize("argv, message", [
    ([], "required: <command>"),
    (["train"], "invalid choice: 'train'"),
    (["fit", "--out", "x"], "one of the arguments --crowdflower --folder --csv is required"),
    (["fit", "--folder", "a", "--csv", "b", "--out", "x"], "not allowed with argument"),
    (["fit", "--folder", "a"], "the following arguments are required: --out"),
    (["fit", "--folder", "a", "--out", "x", "--epochs", "0"], "expected a positive integer"),
    (["fit", "--folder", "a", "--out", "x", "--head", "big"], "invalid choice: 'big'"),
    (["fit", "--folder", "a", "--out", "x", "--image-col", "f"], "--image-col only applies"),
    (["fit", "--folder", "a", "--out", "x", "--early-stopping"], "--validation-fraction > 0"),
    (["predict", "model"], "the following arguments are required: IMAGE_OR_FOLDER"),
    (["download", "--min-confidence", "2"], "expected a number from 0 to 1"),
    (["download", "--no-download", "--timeout", "inf"], "expected a positive number, got 'inf'"),
    (["fit", "--folder", "a", "--out", "x", "--lr", "nan"], "expected a positive number"),
    (["fit", "--folder", "a", "--out", "x", "--lr", "inf"], "got 'inf'"),
    (["fit", "--folder", "a", "--out", "x", "--image-size", "4"], "image_size must be in"),
    (["fit", "--folder", "a", "--out", "x", "--label-smoothing", "1"],
     "label_smoothing must be in [0, 1)"),
    (["fit", "--folder", "a", "--out", "x", "--validation-fraction", "1"],
     "validation_fraction must be in [0, 1)"),
    (["fit", "--folder", "a", "--out", "x", "--random-state", "-1"], "random_state must be"),
    (["fit", "--folder", "a", "--out", "x", "--backbone", "resnet_18"],
     "'resnet_18' is not a timm model name"),
    (["demo", "--quiet", "--verbose"], "not allowed with argument"),
])
def test_bad_usage_exits_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "usage: wjsentiment" in err


def test_exit_statuses_of_the_process(tmp_path):
    """``python -m wjsentiment`` exits 2 on bad usage and 1 on a failure, with one line."""
    result = run_cli("predict")
    assert result.returncode == 2
    assert "wjsentiment predict: error:" in result.stderr
    result = run_cli("evaluate", tmp_path / "no_model_here", "--folder", tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("wjsentiment evaluate: error:")
    assert "no_model_here" in result.stderr and "Traceback" not in result.stderr
