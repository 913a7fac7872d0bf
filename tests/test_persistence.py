"""Loading checks what it reads: every damaged or edited model file is one ModelFileError."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_bright_dark

from wjsentiment import SentimentClassifier
from wjsentiment.persistence import CONFIG_FILE, WEIGHTS_FILE, ModelFileError
from wjsentiment.persistence.model_files import read_tensors
from wjsentiment.persistence.schemas import schema_problem


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny fitted classifier saved once; tests damage copies of it."""
    X, y = make_bright_dark(4)
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=32, epochs=1,
                              batch_size=8, verbose=0, random_state=0).fit(X, y)
    return Path(clf.save(tmp_path_factory.mktemp("saved") / "model"))


@pytest.fixture
def model(saved, tmp_path) -> Path:
    """A fresh copy of the saved model to damage."""
    return Path(shutil.copytree(saved, tmp_path / "model"))


def edit_config(folder: Path, change: Callable[[dict], None]) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    change(config)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def load_error(folder: Path) -> ModelFileError:
    with pytest.raises(ModelFileError) as info:
        SentimentClassifier.load(folder)
    return info.value


def test_the_undamaged_copy_loads(model):
    assert SentimentClassifier.load(model).classes_.tolist() == ["Negative", "Positive"]


def _header_says_more(data: bytes) -> bytes:
    return (10**9).to_bytes(8, "little") + data[8:]


@pytest.mark.parametrize("damage, problem", [
    (lambda data: b"", "empty"),
    (lambda data: data[:5], "truncated"),
    (lambda data: data[: len(data) // 2], "truncated"),
    (lambda data: data + b"\0" * 16, "longer than its header says"),
    (lambda data: b"GARBAGE!" * 100, "truncated or not a safetensors file"),
    (_header_says_more, "truncated or not a safetensors file"),
    (lambda data: data[:8] + b"\xff" * (len(data) - 8), "not a safetensors file"),
])
def test_damaged_weights_are_one_error_naming_the_file(model, damage, problem):
    weights = model / WEIGHTS_FILE
    weights.write_bytes(damage(weights.read_bytes()))
    error = load_error(model)
    assert isinstance(error, ValueError)  # callers catching ValueError keep working
    assert error.path == str(weights)
    assert problem in str(error) and WEIGHTS_FILE in str(error)
    assert "restore the model folder" in str(error)


@pytest.mark.parametrize("text, problem", [
    ("", "it is empty"),
    ("{\"format_version\": 1, ", "not valid JSON"),
    ("[1, 2]", "holds a list, not a JSON object"),
    ("\xff\xfe".encode("latin-1").decode("latin-1"), "not UTF-8"),
])
def test_unreadable_json_is_one_error_naming_the_file(model, text, problem):
    (model / CONFIG_FILE).write_bytes(text.encode("latin-1"))
    error = load_error(model)
    assert problem in str(error) and error.path == str(model / CONFIG_FILE)


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(config):
        target = config
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


def _delete(key):
    return lambda config: config.pop(key)


@pytest.mark.parametrize("change, problem", [
    (_delete("spec"), "the key 'spec' is missing"),
    (_delete("format_version"), "no format_version"),
    (_set("format_version", "1"), "is not a version"),
    (_set("spec", "n_classes", "two"), "spec.n_classes must be an integer, got a string"),
    (_set("spec", "n_classes", True), "spec.n_classes must be an integer"),
    (_set("history", {"epoch": 1}), "history must be a list of objects"),
    (_set("classes", "values", "Negative"), "classes.values must be a list"),
    (_set("class_weight", 3), "class_weight must be null or a string or an object"),
    (_set("params", "epochs", 0), "epochs must be in"),
    (_set("params", "lr", "fast"), "lr must be a number"),
    (_set("params", "backbone", "no_such_net"), "not a timm model name"),
    (_set("params", "colour", "blue"), "unknown parameters ['colour']"),
    (_set("skipped", [[1, "a.png"]]), "SkippedImage"),
    (_set("spec", "head", "mlp"), "spec.head ('mlp') differs from params.head ('linear')"),
    (_set("classes", "dtype", "no-such-dtype"), "TypeError"),
])
def test_edited_config_is_one_error_naming_the_problem(model, change, problem):
    edit_config(model, change)
    error = load_error(model)
    assert problem in str(error), str(error)
    assert error.path == str(model / CONFIG_FILE)


def test_a_newer_format_asks_to_upgrade(model):
    edit_config(model, _set("format_version", 99))
    error = load_error(model)
    assert "newer wjsentiment (format 99" in str(error) and "Upgrade wjsentiment" in str(error)


def test_another_kind_of_model_says_how_to_load_it(model):
    edit_config(model, _set("estimator", "SentimentEnsemble"))
    assert "Load it with SentimentEnsemble.load()" in str(load_error(model))


def test_classes_that_do_not_match_the_head_are_refused(model):
    edit_config(model, _set("classes", "values", ["Negative", "Neutral", "Positive"]))
    assert "lists 3 classes, but the network's head has 2 outputs" in str(load_error(model))


def test_tensor_shapes_are_checked_against_the_network_the_json_describes(model):
    def three_classes(config):
        config["classes"]["values"] = ["Negative", "Neutral", "Positive"]
        config["spec"]["n_classes"] = 3

    edit_config(model, three_classes)
    error = load_error(model)
    assert error.path == str(model / WEIGHTS_FILE)
    assert "do not fit the network config.json describes" in str(error)
    assert "'head.weight' is (2, " in str(error) and "expected (3, " in str(error)


def test_tensors_of_another_head_are_named(model):
    edit_config(model, lambda c: (c["spec"].update(head="mlp"), c["params"].update(head="mlp")))
    error = load_error(model)
    assert "missing 'head.0.weight'" in str(error) and "unexpected 'head.bias'" in str(error)


def test_a_missing_file_stays_file_not_found(model):
    (model / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        SentimentClassifier.load(model)


def test_read_tensors_checks_the_weights_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    weights = tmp_path / WEIGHTS_FILE
    save_file({"w": torch.ones(3)}, str(weights))
    assert read_tensors(weights)["w"].tolist() == [1.0, 1.0, 1.0]
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(ModelFileError, match="truncated"):
        read_tensors(weights)


def test_missing_parameters_take_their_defaults(model):
    """A model saved before a parameter existed still loads."""
    edit_config(model, lambda c: c["params"].pop("cuda_graphs"))
    assert SentimentClassifier.load(model).cuda_graphs == "auto"


def test_loaded_labels_are_plain_strings(model):
    X, _ = make_bright_dark(2)
    loaded = SentimentClassifier.load(model)
    assert all(type(v) is str for v in loaded.classes_.tolist())
    assert loaded.predict_proba(X).shape == (4, 2)


INTEGER, NUMBER, STRING, NULL = ({"type": t} for t in ("integer", "number", "string", "null"))


def _list_of(item):
    return {"type": "array", "items": item}


@pytest.mark.parametrize("value, schema, expected", [
    (1, INTEGER, None),
    (True, INTEGER, "x must be an integer, got true or false (true)"),
    (1, NUMBER, None),
    ([1.5, "a"], _list_of(NUMBER), "x[1] must be a number, got a string ('a')"),
    ({"a": 1}, {"type": "object", "required": ["a", "b"],
                "properties": {"a": INTEGER, "b": STRING}}, "the key 'x.b' is missing"),
    (None, {"anyOf": [NULL, _list_of(INTEGER)]}, None),
    ({"pairs": [[1, 2]]}, {"anyOf": [NULL, {"type": "object", "required": ["pairs"],
                                           "properties": {"pairs": _list_of(_list_of({}))}}]},
     None),
    (float("nan"), NUMBER, "x must be a number, got NaN"),
    ([1.0, float("inf")], _list_of({"type": "number", "exclusiveMinimum": 0}),
     "x[1] must be a positive number, got Infinity"),
])
def test_schema_problem(value, schema, expected):
    assert schema_problem(value, schema, "x") == expected


def test_the_message_is_one_line_naming_the_file_the_problem_and_the_remedy(model):
    """The CLI prints it as it is."""
    (model / WEIGHTS_FILE).write_bytes(b"")
    message = str(load_error(model))
    assert "\n" not in message
    assert message.startswith(f"Cannot load {str(model / WEIGHTS_FILE)!r}: it is empty")
    assert message.endswith("fit and save the model again.")


# ------------------------------------------------------------- models saved by earlier versions
SAVED_V2 = Path(__file__).parent / "data" / "saved_v2"


def test_models_saved_by_format_2_still_load_and_predict_the_same():
    """A classifier (format 2) and an ensemble (format 1 with decision and class_prior)
    saved at commit b2bbded: see tests/data/saved_v2/README.md."""
    import numpy as np

    import wjsentiment

    expected = np.load(SAVED_V2 / "expected_v2.npz")
    model = wjsentiment.load(SAVED_V2 / "model_v2").set_params(verbose=0)
    assert model.temperature_ != 1.0 and model.decision_rule_ == "balanced"
    np.testing.assert_allclose(model.predict_proba(expected["X"]), expected["model"], atol=1e-6)
    assert model.predict(expected["X"]).tolist() == expected["model_pred"].tolist()
    ensemble = wjsentiment.load(SAVED_V2 / "ensemble_v2").set_params(verbose=0)
    np.testing.assert_allclose(ensemble.class_prior_, [24 / 38, 14 / 38])
    np.testing.assert_allclose(ensemble.predict_proba(expected["X"]), expected["ensemble"],
                               atol=1e-6)
    assert ensemble.predict(expected["X"]).tolist() == expected["ensemble_pred"].tolist()


def test_the_format_version_decides_how_a_file_is_read(model):
    """A format-1 config (no calibration) is upgraded by its migration; the same file
    stamped format 2 lacks what format 2 requires."""
    def as_format_1(config):
        config["format_version"] = 1
        del config["calibration"]
        config["params"].pop("calibration")

    edit_config(model, as_format_1)
    loaded = SentimentClassifier.load(model)
    assert loaded.calibration is None and loaded.temperature_ == 1.0
    assert loaded.class_prior_.tolist() == [0.5, 0.5]
    edit_config(model, _set("format_version", 2))
    assert "the key 'calibration' is missing" in str(load_error(model))


# --------------------------------------------------------------- what save refuses (issue 19)
@pytest.fixture(scope="module")
def fitted(saved) -> SentimentClassifier:
    return SentimentClassifier.load(saved)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_save_refuses_a_folder_that_is_not_a_model(fitted, tmp_path):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="holds something other than a saved wjsentiment"
                                              " model") as info:
        fitted.save(target)
    assert str(target) in str(info.value)
    assert (target / "holiday.jpg").read_bytes() == b"mine" and _hidden(tmp_path) == []


def test_save_refuses_a_file(fitted, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(FileExistsError, match="it is a file"):
        fitted.save(target)
    assert target.read_text() == "mine" and _hidden(tmp_path) == []
    with pytest.raises(FileExistsError, match="it is a file"):  # and keeps refusing, clearly
        fitted.save(target)


def test_save_refuses_a_symlink_to_a_folder(fitted, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(FileExistsError, match="symbolic link"):
        fitted.save(link)
    assert link.is_symlink() and list(real.iterdir()) == [] and _hidden(tmp_path) == []


def test_save_writes_into_an_empty_folder_and_over_a_saved_model(fitted, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    fitted.save(target)
    fitted.save(target)  # over itself
    SentimentClassifier.load(target)
    assert _hidden(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the atomic exchange is Linux's renameat2")
def test_a_reader_never_finds_the_folder_missing_while_it_is_saved_again(fitted, tmp_path,
                                                                         monkeypatch):
    """The old model is swapped for the new one in one step. A reader thread polls the
    folder during 10 saves, and, since a thread may not run at the very moment of a swap, the
    folder is also looked at right after every rename the saves make."""
    import os
    import threading

    target = Path(fitted.save(tmp_path / "model"))
    found, done = [], threading.Event()  # list.append is atomic between threads

    def look():
        found.append((target / CONFIG_FILE).is_file())

    def renaming(rename):
        def wrapped(*args, **kwargs):
            rename(*args, **kwargs)
            look()
        return wrapped

    monkeypatch.setattr(os, "rename", renaming(os.rename))
    monkeypatch.setattr(os, "replace", renaming(os.replace))
    reader = threading.Thread(target=lambda: [look() for _ in iter(done.is_set, True)])
    reader.start()
    try:
        for _ in range(10):
            fitted.save(target)
    finally:
        done.set()
        reader.join(timeout=10)
    assert len(found) > 10 and all(found), f"missing in {found.count(False)} of {len(found)} checks"


def test_a_killed_saves_temporary_folder_is_removed_by_the_next_save(fitted, tmp_path):
    import subprocess
    import sys

    target = tmp_path / "model"
    killed = ("import os, sys\nfrom wjsentiment.persistence import atomic_folder\n"
              "saving = atomic_folder(sys.argv[1])\ntmp = saving.__enter__()\n"
              "(tmp / 'model.safetensors').write_bytes(b'half')\nos._exit(9)\n")
    subprocess.run([sys.executable, "-c", killed, str(target)], check=False, timeout=120)
    assert len(_hidden(tmp_path)) == 1 and ".wjs-tmp-" in _hidden(tmp_path)[0]
    fitted.save(target)
    assert _hidden(tmp_path) == []


def test_a_running_saves_temporary_folder_is_left_alone(fitted, tmp_path):
    from wjsentiment.persistence import atomic_folder

    target = tmp_path / "model"
    with atomic_folder(target) as running:  # this process is alive: its save is running
        fitted.save(target)
        assert running.is_dir()
    assert _hidden(tmp_path) == []


def test_a_failed_swap_without_the_atomic_exchange_puts_the_old_folder_back(tmp_path,
                                                                          monkeypatch):
    """Where there is no renameat2 the old folder is renamed away before the new one is
    renamed in; if that second rename fails, the old folder goes back to its place."""
    import os

    from wjsentiment.persistence import atomic_folder, files

    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    rename, calls = os.rename, []

    def failing_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the new folder into place
            raise OSError(5, "Input/output error")
        rename(src, dst)

    monkeypatch.setattr(files, "_renameat2", lambda: None)
    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="Input/output"), \
            atomic_folder(target, replaceable=lambda _: True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert calls[1][1] == "model"
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert _hidden(tmp_path) == []


def test_saved_files_follow_the_umask(fitted, tmp_path):
    import os
    import stat

    from wjsentiment.persistence import atomic_file

    previous = os.umask(0o022)
    try:
        target = Path(fitted.save(tmp_path / "model"))
        with atomic_file(tmp_path / "out.csv") as handle:
            handle.write("a\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    for file in (target / CONFIG_FILE, target / WEIGHTS_FILE, tmp_path / "out.csv"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file


# ------------------------------------------------------ every number that reaches a model is finite
@pytest.mark.parametrize("change, problem", [
    (_set("calibration", "logit_adjustment", [float("nan"), 0.0]),
     "calibration.logit_adjustment[0] must be a number, got NaN"),
    (_set("calibration", "class_prior", [0.5, float("inf")]),
     "calibration.class_prior[1] must be a non-negative number, got Infinity"),
    (_set("calibration", "class_prior", [1.5, -0.5]),
     "calibration.class_prior[1] must be a non-negative number"),
    (_set("calibration", "temperature", 0.0), "calibration.temperature must be a positive"),
    (_set("calibration", "temperature", 1e400), "calibration.temperature must be a positive "
                                                "number, got Infinity"),
    (_set("class_weight", {"pairs": [["Negative", -1.0]]}), "class_weight['Negative'] is -1.0"),
    (_set("classes", "values", ["Positive", "Negative"]), "are not sorted and unique"),
    (_set("classes", "values", ["Negative", "Negative"]), "are not sorted and unique"),
    (_set("classes", "values", ["Negative", None]), "classes.values must be a list of strings"),
    (_set("classes", "values", ["Negative", 1]), "classes.values must be a list of strings"),
])
def test_non_finite_numbers_and_bad_classes_are_refused_on_load(model, change, problem):
    edit_config(model, change)
    error = load_error(model)
    assert problem in str(error), str(error)
    assert error.path == str(model / CONFIG_FILE)


@pytest.mark.parametrize("text, problem", [
    ('{"format_version": 2, "params": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too"),
    ('{"format_version": 2, "n_epochs": ' + "9" * 5000 + "}", "JSON readers refuse"),
])
def test_json_that_python_cannot_read_is_a_model_file_error(model, text, problem):
    (model / CONFIG_FILE).write_text(text)
    error = load_error(model)
    assert problem in str(error) and error.path == str(model / CONFIG_FILE)


def test_save_refuses_non_finite_numbers_before_writing(fitted, tmp_path):
    import copy

    broken = copy.deepcopy(fitted)
    broken.temperature_ = float("nan")
    with pytest.raises(ValueError, match="calibration.temperature must be a positive number, "
                                         "got NaN"):
        broken.save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_saved_json_holds_no_nan(fitted, tmp_path):
    import copy

    noisy = copy.deepcopy(fitted)
    noisy.history_ = [{**noisy.history_[0], "images_per_second": float("nan")}]
    folder = Path(noisy.save(tmp_path / "model"))
    text = (folder / CONFIG_FILE).read_text()
    assert "NaN" not in text and json.loads(text)["history"][0]["images_per_second"] is None


@pytest.mark.parametrize("weights, problem", [
    ([-1.0, 2.0], "weights[0] must be a non-negative number, got a number (-1.0)"),
    ([0.0, 0.0], "its weights [0.0, 0.0] are all 0"),
])
def test_an_ensembles_weights_are_checked_on_load(tmp_path, weights, problem):
    from wjsentiment import SentimentEnsemble
    from wjsentiment.persistence import ENSEMBLE_FILE

    folder = Path(shutil.copytree(SAVED_V2 / "ensemble_v2", tmp_path / "ensemble"))
    config = json.loads((folder / ENSEMBLE_FILE).read_text())
    config["weights"] = weights
    (folder / ENSEMBLE_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelFileError) as info:
        SentimentEnsemble.load(folder)
    assert problem in str(info.value) and info.value.path == str(folder / ENSEMBLE_FILE)


# ------------------------------------------------- the lock folder in the shared temporary folder
@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """A system temporary folder of the test's own."""
    import tempfile

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.mark.skipif(sys.platform == "win32", reason="user ids and modes are POSIX's")
def test_the_lock_folder_is_this_accounts_with_mode_0700(temp_root):
    import os
    import stat

    from wjsentiment.persistence import lock_folder

    folder = lock_folder()
    assert folder == temp_root / f"wjsentiment-locks-{os.getuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    folder.chmod(0o777)  # made by an older release, or by hand: taken back
    assert lock_folder() == folder and stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.skipif(sys.platform == "win32", reason="user ids and modes are POSIX's")
def test_a_lock_folder_planted_by_another_account_is_refused(temp_root, monkeypatch):
    import os

    from wjsentiment.persistence import lock_folder

    elsewhere = temp_root / "elsewhere"
    elsewhere.mkdir()
    link = temp_root / f"wjsentiment-locks-{os.getuid()}"
    link.symlink_to(elsewhere)
    with pytest.raises(PermissionError, match=f"'{link}' is a symbolic link.*TMPDIR"):
        lock_folder()
    link.unlink()
    link.write_text("")
    with pytest.raises(PermissionError, match="is not a folder"):
        lock_folder()
    other = os.getuid() + 1  # this account made the folder; pretend to be another one
    (temp_root / f"wjsentiment-locks-{other}").mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: other)
    with pytest.raises(PermissionError, match=f"belongs to another account .user id {other - 1}"):
        lock_folder()
