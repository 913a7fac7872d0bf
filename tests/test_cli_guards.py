"""What the command line guards and shows: an output that is also an input, a second run on
the same output, folders that cannot be walked, an unwritable ``fit --out``, the decision
rule and the ordinal order of the classes, ``explain`` past a bad file, one-line warnings,
no torch (nor LitServe) before a path is checked; and the Dask glue's bounded model cache and
plugin."""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import subprocess
import sys
import threading
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wjsentiment.datasets
from wjsentiment import SentimentClassifier, cli, config_context, get_config
from wjsentiment.scale import prediction_columns

REPO = Path(__file__).resolve().parents[1]
#: Sentiment labels whose sorted order (the model's classes_) is not their ordinal order.
LABELS = ["Highly positive", "Negative", "Positive"]
ORDINAL = ["Negative", "Positive", "Highly positive"]
BALANCED = "Labels by the 'balanced' rule: the class most likely relative to its training " \
           "frequency"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Six 24x16 PNGs (wider than tall), in their own folder."""
    folder = tmp_path_factory.mktemp("guard-images")
    paths = []
    for i, value in enumerate([20, 230, 120, 40, 210, 140]):
        paths.append(folder / f"{i}.png")
        Image.new("RGB", (24, 16), (value, 255 - value, value // 2)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def model_dir(images, tmp_path_factory) -> Path:
    """A tiny three-class model trained with balanced class weights (decision "balanced")."""
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=16, epochs=1,
                              calibration=None, class_weight="balanced", random_state=0,
                              verbose=0)
    clf.fit([str(p) for p in images], LABELS * 2)
    return Path(clf.save(tmp_path_factory.mktemp("guard-model") / "model"))


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------- cheap checks come first
def test_a_missing_model_or_input_fails_before_torch_is_imported(images, model_dir, tmp_path):
    code = ("import sys; from wjsentiment.cli import main\n"
            f"first = main(['predict', 'no/such/model', {str(images[0])!r}])\n"
            f"second = main(['predict', {str(model_dir)!r}, 'ghost.png'])\n"
            "print(first, second, 'torch' in sys.modules)")
    result = python(code, tmp_path)
    assert result.stdout.split() == ["1", "1", "False"], result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("wjsentiment predict: error: model folder 'no/such/model'")
    assert lines[1] == "wjsentiment predict: error: input 'ghost.png' does not exist."


def test_serve_help_and_a_missing_model_import_neither_torch_nor_litserve(tmp_path):
    code = ("import sys, contextlib, io; from wjsentiment.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['serve', '--help'])\n"
            "status = main(['serve', 'missing/'])\n"
            "print(status, *[m for m in ('torch', 'litserve') if m in sys.modules])")
    result = python(code, tmp_path)
    assert result.stdout.split() == ["1"], result.stderr
    assert result.stderr.startswith("wjsentiment serve: error: No model at 'missing'")


def test_fit_refuses_an_unwritable_out_before_reading_any_image(images, tmp_path,
                                                                monkeypatch, capsys):
    photos = tmp_path / "photos"
    for label, image in zip(LABELS * 2, images):
        (photos / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, photos / label)
    (tmp_path / "somefile").write_text("a file, not a folder")

    def read_images(*args, **kwargs):
        raise AssertionError("the images were read before --out was checked")

    monkeypatch.setattr(wjsentiment.datasets, "load_image_folder", read_images)
    for out in ("somefile/x", "somefile"):
        status = cli.main(["fit", "--folder", str(photos), "--out", str(tmp_path / out),
                           "--weights", "none", "--image-size", "16", "--quiet"])
        err = capsys.readouterr().err
        assert status == 1, err
        assert err.startswith(f"wjsentiment fit: error: --out '{tmp_path / out}' cannot be a "
                              f"folder: '{tmp_path / 'somefile'}' is a file")


# ------------------------------------------------------------------ outputs a user owns
def test_predict_refuses_an_output_that_is_also_an_input(model_dir, images, tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + "".join(f"{p}\n" for p in images))
    link = tmp_path / "link.csv"
    link.symlink_to(listing)
    before = listing.read_text(), images[1].read_bytes()
    for inputs, out in (([listing], listing), ([listing], link), (images[:2], images[1])):
        status = cli.main(["predict", str(model_dir), *map(str, inputs), "--out", str(out)])
        err = capsys.readouterr().err
        assert status == 1, err
        assert f"--out '{out}' is also an input" in err and len(err.splitlines()) == 1
    assert (listing.read_text(), images[1].read_bytes()) == before


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(
        model_dir, images, tmp_path, monkeypatch, capsys):
    from wjsentiment.scale import stream

    out = tmp_path / "predictions.csv"
    second: dict = {}
    predict_frame = stream.predict_frame

    def first_chunk_starts_a_second_run(model, paths):
        if not second:  # once: the second run's chunks (if any) come here too
            second["started"] = True
            other = threading.Thread(target=lambda: second.update(status=cli.main(
                ["predict", str(model_dir), str(images[0]), "--out", str(out), "--quiet"])))
            other.start()
            other.join(timeout=120)
            second["alive"] = other.is_alive()
        return predict_frame(model, paths)

    monkeypatch.setattr(stream, "predict_frame", first_chunk_starts_a_second_run)
    status = cli.main(["predict", str(model_dir), *map(str, images), "--out", str(out),
                       "--batch-size", "2", "--quiet"])
    err = capsys.readouterr().err
    assert status == 0
    assert second == {"started": True, "status": 1, "alive": False}
    assert f"error: '{out}' is being written by another run" in err
    assert [r["path"] for r in rows_of(out)] == list(map(str, images))
    # Once the first run is over, the output is free again.
    assert cli.main(["predict", str(model_dir), *map(str, images), "--out", str(out),
                     "--resume"]) == 0
    assert "All 6 images are already in" in capsys.readouterr().err


# ------------------------------------------------------------- folders that cannot be walked
@pytest.fixture
def tangled(images, tmp_path, monkeypatch) -> tuple[Path, list[Path]]:
    """A folder with two images, two links that point at each other, a link back up, and a
    sub-folder that cannot be listed (os.scandir refuses it, as for a folder without read
    permission: the tests may run as root, who may read anything)."""
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    good = [Path(shutil.copy(images[0], root / "a")), Path(shutil.copy(images[1], root))]
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    (root / "a" / "up").symlink_to(root)
    (root / "private").mkdir()
    shutil.copy(images[2], root / "private")
    scandir = os.scandir

    def refusing(path="."):
        if os.fspath(path).endswith("private"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    return root, good


def test_predict_writes_error_rows_for_what_a_folder_walk_cannot_enter(model_dir, tangled,
                                                                      tmp_path, capsys):
    root, good = tangled
    out = tmp_path / "predictions.csv"
    status = cli.main(["predict", str(model_dir), str(root), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 0, err
    rows = {r["path"]: r for r in rows_of(out)}
    assert list(rows) == [str(good[1]), str(good[0]), str(root / "a" / "up"),
                          str(root / "loop1"), str(root / "loop2"), str(root / "private")]
    assert all(rows[str(p)]["error"] == "" and rows[str(p)]["label"] in LABELS for p in good)
    assert rows[str(root / "a" / "up")]["error"].startswith("a link to ")
    assert "walked already" in rows[str(root / "a" / "up")]["error"]
    assert rows[str(root / "loop1")]["error"] == \
        "cannot be read: Too many levels of symbolic links"
    assert rows[str(root / "private")]["error"] == "cannot list this folder: Permission denied"
    assert "4 of 6 image(s) could not be read" in err


def test_explain_skips_what_a_folder_walk_cannot_enter(model_dir, tangled, tmp_path, capsys):
    root, good = tangled
    status = cli.main(["explain", str(model_dir), str(root), "--out", str(tmp_path / "why")])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Wrote 2 heat maps" in captured.out and "skipped 4 input(s)" in captured.out
    assert f"Skipped {root / 'private'}: cannot list this folder: Permission denied" \
        in captured.err
    index = (tmp_path / "why" / "index.html").read_text()
    assert "Skipped (4)" in index and "loop2" in index


# ------------------------------------------------------------ the rule and the class order
def test_predict_and_evaluate_name_the_decision_rule(model_dir, images, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    assert cli.main(["predict", str(model_dir), *map(str, images), "--out", str(out)]) == 0
    assert BALANCED in capsys.readouterr().err
    rows = rows_of(out)
    assert [r["rule"] for r in rows] == ["balanced"] * len(images)
    (tmp_path / "labelled.csv").write_text(
        "path,label\n" + "".join(f"{p},{y}\n" for p, y in zip(images, LABELS * 2)))
    assert cli.main(["evaluate", str(model_dir), "--csv", str(tmp_path / "labelled.csv")]) == 0
    assert capsys.readouterr().out.startswith(BALANCED)


def test_prediction_csv_lists_the_classes_in_ordinal_order(model_dir, images, tmp_path):
    out = tmp_path / "predictions.csv"
    assert cli.main(["predict", str(model_dir), *map(str, images), "--out", str(out),
                     "--quiet"]) == 0
    rows = rows_of(out)
    assert list(rows[0]) == ["path", "label", "rule", *[f"proba_{c}" for c in ORDINAL],
                             "error"]
    model = SentimentClassifier.load(model_dir)
    assert model.classes_.tolist() == LABELS  # sorted, unlike the CSV
    proba = model.predict_proba([str(p) for p in images])
    for k, label in enumerate(LABELS):  # each column holds its own class's probabilities
        np.testing.assert_allclose([float(r[f"proba_{label}"]) for r in rows], proba[:, k],
                                   atol=2e-6)
    assert prediction_columns(["b", "a"])[3:5] == ["proba_b", "proba_a"]  # other classes


def test_explain_goes_on_past_a_bad_file_keeping_the_photos_aspect(model_dir, images,
                                                                   tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_text("not a PNG")
    out = tmp_path / "why"
    status = cli.main(["explain", str(model_dir), str(images[0]), str(bad), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.startswith("Wrote 1 heat maps")
    assert f"Skipped {bad}: not an image file PIL can read" in captured.err
    index = unescape((out / "index.html").read_text())
    assert "Skipped (1)" in index and "broken.png: not an image file PIL can read" in index
    assert BALANCED in index
    with Image.open(next(out.glob("*.png"))) as heat_map:  # a 24x16 photo, 384 px wide
        assert heat_map.size == (384, 256)


# -------------------------------------------------------------------------------- warnings
def test_warnings_show_in_one_line_without_the_source(tmp_path):
    code = ("import sys, warnings\nimport wjsentiment.datasets as datasets\n"
            "def fetch(*args, **kwargs):\n"
            "    warnings.warn('only 3 of 40 images were held out', UserWarning)\n"
            "    raise OSError('no network')\n"
            "datasets.fetch_image_sentiment = fetch\n"
            "from wjsentiment.cli import main\n"
            "sys.exit(main(['download', '--no-download', '--quiet']))")
    result = python(code, tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("wjsentiment download: warning: only 3 of 40 images were held out\n"
                             "wjsentiment download: error: no network\n")


# ------------------------------------------------------------------------------ Dask glue
def test_load_model_keeps_a_bounded_number_of_models(model_dir, tmp_path):
    from wjsentiment.scale.dask import MODELS_KEPT, load_model

    folders = [shutil.copytree(model_dir, tmp_path / f"m{i}") for i in range(MODELS_KEPT + 1)]
    first = [load_model(folder) for folder in folders]
    assert load_model(folders[-1]) is first[-1]  # kept
    assert load_model(folders[0]) is not first[0]  # the least recently used one went


def test_worker_setup_travels_by_reference_and_sets_the_config(tmp_path):
    from wjsentiment.scale import worker_setup

    sent = pickle.dumps(worker_setup(feature_cache_dir=tmp_path, cache_memory=12345))
    assert b"wjsentiment.scale.dask" in sent and b"WorkerSetup" in sent
    before = get_config()
    with config_context(feature_cache_dir=before["feature_cache_dir"],
                        cache_memory_bytes=before["cache_memory_bytes"]):
        pickle.loads(sent).setup(worker=None)
        assert get_config()["feature_cache_dir"] == str(tmp_path)
        assert get_config()["cache_memory_bytes"] == 12345
