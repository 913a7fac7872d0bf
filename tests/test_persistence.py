"""Loading checks what it reads: every damaged or edited model file is one ModelFileError."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_bright_dark

from wjsentiment import SentimentClassifier
from wjsentiment.persistence import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelFileError,
    read_tensors,
    schema_problem,
)


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
