"""Grad-CAM heat maps (wjsentiment.explain) and their plot."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from wjsentiment import SentimentClassifier, SentimentEnsemble
from wjsentiment.explain import default_layer, explain_images, grad_cam, overlay_heatmap
from wjsentiment.plotting import plot_explanations

SIZE = 64


def square_images(n: int, seed: int):
    """Random noise; every other image has a bright square inside one quadrant (Positive),
    the others none (Negative). Returns images, labels and each square's quadrant (-1: none):
    0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 160, (n, SIZE, SIZE, 3)).astype(np.uint8)
    quadrant = rng.integers(0, 4, n)
    quadrant[1::2] = -1
    half, side = SIZE // 2, SIZE // 4
    for i in np.flatnonzero(quadrant >= 0):
        row, col = divmod(int(quadrant[i]), 2)
        top = row * half + rng.integers(0, half - side + 1)
        left = col * half + rng.integers(0, half - side + 1)
        X[i, top:top + side, left:left + side] = 255
    return X, np.where(quadrant >= 0, "Positive", "Negative"), quadrant


def peak_quadrants(maps: np.ndarray) -> np.ndarray:
    """The quadrant holding each map's maximum."""
    n, size, _ = maps.shape
    row, col = np.divmod(maps.reshape(n, -1).argmax(axis=1), size)
    return (row >= size // 2) * 2 + (col >= size // 2)


@pytest.fixture(scope="module")
def squares():
    """A small CNN trained for a few steps to tell images with a square from those without."""
    X, y, quadrant = square_images(64, seed=0)
    clf = SentimentClassifier(backbone="test_resnet", weights=None, image_size=SIZE, epochs=10,
                              batch_size=16, lr=1e-2, augment=False, verbose=0, random_state=0)
    clf.fit(X, y)
    X_test, y_test, q_test = square_images(40, seed=1)
    return clf, X_test, y_test, q_test


@pytest.fixture(scope="module")
def tiny():
    """A resnet18 fitted for one epoch on 8 random 64 px images of two classes."""
    rng = np.random.default_rng(3)
    X = rng.integers(0, 255, (8, SIZE, SIZE, 3), dtype=np.uint8)
    y = np.array(["Negative", "Positive"] * 4)
    clf = SentimentClassifier(weights=None, image_size=SIZE, epochs=1, batch_size=4, verbose=0,
                              random_state=0).fit(X, y)
    return clf, X, y


# ------------------------------------------------------------------------- where it looks
def test_heat_map_peaks_in_the_quadrant_of_the_square(squares):
    clf, X, y, quadrant = squares
    assert np.mean(clf.predict(X) == y) >= 0.9  # the model did learn the task
    has_square = quadrant >= 0
    maps = grad_cam(clf, X[has_square])
    hits = np.mean(peak_quadrants(maps) == quadrant[has_square])
    assert hits >= 0.8
    # The criterion tells a real map from a uniform or a random one.
    uniform = np.ones_like(maps)
    noise = np.random.default_rng(0).random(maps.shape).astype(np.float32)
    for fake in (uniform, noise):
        assert np.mean(peak_quadrants(fake) == quadrant[has_square]) < 0.5


def test_predicted_target_is_the_predicted_label(squares):
    clf, X, _, _ = squares
    predicted = clf.predict(X[:6])
    np.testing.assert_array_equal(grad_cam(clf, X[:6]), grad_cam(clf, X[:6], target=predicted))


def test_one_label_for_all_equals_it_repeated_and_other_labels_differ(squares):
    clf, X, _, quadrant = squares
    X = X[quadrant >= 0][:4]
    positive = grad_cam(clf, X, target="Positive")
    np.testing.assert_array_equal(positive, grad_cam(clf, X, target=["Positive"] * 4))
    mixed = grad_cam(clf, X, target=["Positive", "Negative", "Positive", "Negative"])
    np.testing.assert_array_equal(mixed[[0, 2]], positive[[0, 2]])
    assert not np.allclose(mixed[[1, 3]], positive[[1, 3]])


# ------------------------------------------------------------------------- shape and range
def test_shape_dtype_and_range(tiny):
    clf, X, _ = tiny
    maps = grad_cam(clf, X, batch_size=3)
    assert maps.shape == (len(X), SIZE, SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    peaks = maps.reshape(len(X), -1).max(axis=1)
    assert np.all((peaks == 0) | np.isclose(peaks, 1.0))  # each map scaled to its maximum
    assert np.any(np.isclose(peaks, 1.0))
    np.testing.assert_allclose(maps, grad_cam(clf, X, batch_size=8), atol=1e-5)


def test_paths_decode_as_in_predict(tiny, tmp_path):
    from PIL import Image

    clf, X, _ = tiny
    paths = []
    for i, pixels in enumerate(X[:3]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    np.testing.assert_allclose(grad_cam(clf, paths), grad_cam(clf, X[:3]), atol=1e-6)


def test_default_layer_is_the_last_feature_map():
    X = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    y = ["Negative", "Positive"] * 2
    layers = {}
    for backbone in ("resnet18", "tf_efficientnet_lite0"):
        clf = SentimentClassifier(backbone=backbone, weights=None, image_size=32, epochs=1,
                                  verbose=0, random_state=0).fit(X, y)
        layers[backbone] = default_layer(clf)
    assert layers == {"resnet18": "layer4", "tf_efficientnet_lite0": "bn2"}


def test_layer_override_and_bad_layer_name(tiny):
    clf, X, _ = tiny
    default = grad_cam(clf, X[:2])
    np.testing.assert_array_equal(grad_cam(clf, X[:2], layer="layer4"), default)
    earlier = grad_cam(clf, X[:2], layer="layer3")  # a 4x4 map rather than 2x2
    assert earlier.shape == default.shape and not np.allclose(earlier, default)
    with pytest.raises(ValueError, match=r"layer='layer9' is not a module of the 'resnet18'"):
        grad_cam(clf, X[:2], layer="layer9")
    with pytest.raises(ValueError, match="does not output a 4-D feature map"):
        grad_cam(clf, X[:2], layer="global_pool")


def test_bad_targets_and_batch_size(tiny):
    clf, X, _ = tiny
    with pytest.raises(ValueError, match=r"\['Neutral'\], which are not classes"):
        grad_cam(clf, X[:2], target="Neutral")
    with pytest.raises(ValueError, match="target has 3 labels for 2 images"):
        grad_cam(clf, X[:2], target=["Positive"] * 3)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        grad_cam(clf, X[:2], batch_size=0)


def test_model_is_left_as_it_was(tiny):
    clf, X, _ = tiny
    net = clf.model_
    net.head.train()  # a mixed state must come back exactly
    net.backbone.layer1.requires_grad_(False)
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    device = next(net.parameters()).device
    for p in net.parameters():  # as after load(); fit leaves its last step's gradients
        p.grad = None
    try:
        grad_cam(clf, X[:3])
        assert [m.training for m in net.modules()] == modes
        assert [p.requires_grad for p in net.parameters()] == flags
        assert all(p.grad is None for p in net.parameters())
        assert next(net.parameters()).device == device
    finally:
        net.eval()
        net.requires_grad_(True)


def test_not_fitted_and_wrong_estimators(tiny):
    _, X, _ = tiny
    with pytest.raises(NotFittedError):
        grad_cam(SentimentClassifier(), X)
    with pytest.raises(NotFittedError):
        grad_cam(SentimentEnsemble([("a", SentimentClassifier())]), X)
    with pytest.raises(NotFittedError):
        default_layer(SentimentClassifier())
    with pytest.raises(TypeError, match="needs a SentimentClassifier"):
        grad_cam(LogisticRegression(), X)


# ----------------------------------------------------------------------------- ensembles
@pytest.fixture(scope="module")
def ensemble(tiny):
    _, X, y = tiny
    member = dict(weights=None, image_size=SIZE, epochs=1, batch_size=4, verbose=0)
    ens = SentimentEnsemble([
        ("a", SentimentClassifier(random_state=0, **member)),
        ("b", SentimentClassifier(backbone="test_resnet", grayscale=True, random_state=1,
                                  **member)),
    ], weights=[1.0, 3.0], verbose=0).fit(X, y)
    return ens, X


def test_ensemble_map_is_the_weighted_mean_of_member_maps(ensemble):
    ens, X = ensemble
    target = ens.predict(X)
    members = [grad_cam(m, X, target=target) for m in ens.estimators_]
    assert not np.allclose(members[0], members[1])
    np.testing.assert_allclose(grad_cam(ens, X), 0.25 * members[0] + 0.75 * members[1],
                               atol=1e-6)
    ens.weights_ = np.array([1.0, 0.0])
    try:
        np.testing.assert_allclose(grad_cam(ens, X, target=target), members[0], atol=1e-6)
    finally:
        ens.weights_ = np.array([0.25, 0.75])


def test_ensemble_of_other_estimators_is_refused(tiny):
    _, X, y = tiny
    flat = X.reshape(len(X), -1)[:, :5].astype(float)
    ens = SentimentEnsemble([("lr", LogisticRegression())], verbose=0).fit(flat, y)
    with pytest.raises(TypeError, match="ensemble member 'lr' is a LogisticRegression"):
        grad_cam(ens, X)


# ------------------------------------------------------------------------------ the plots
def test_explain_images_and_plot(tiny):
    clf, X, y = tiny
    result = explain_images(clf, X[:5])
    proba = clf.predict_proba(X[:5])
    np.testing.assert_array_equal(result.predicted, clf.predict(X[:5]))
    np.testing.assert_allclose(result.probability, proba.max(axis=1))
    np.testing.assert_array_equal(result.images, X[:5])
    fig = plot_explanations(clf, X[:5], y[:5], ncols=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 5
    assert titles[0] == f"{result.predicted[0]} ({result.probability[0]:.2f})\ntrue: {y[0]}"
    with pytest.raises(ValueError, match="one label per image"):
        plot_explanations(clf, X[:5], y[:4])


def test_overlay_blends_the_colormap():
    image = np.full((2, 3, 3), 200, dtype=np.uint8)
    heat = np.zeros((2, 3))
    np.testing.assert_array_equal(overlay_heatmap(image, heat, alpha=0.0), image)
    blue = overlay_heatmap(image, heat, alpha=1.0)  # jet at 0 is dark blue
    assert (blue[..., 2] > blue[..., 0]).all()
    with pytest.raises(ValueError, match="same size"):
        overlay_heatmap(image, np.zeros((3, 3)))


def test_explain_images_with_no_cache_budget_and_a_bad_image(tiny, tmp_path, monkeypatch):
    """With a zero cache budget the store keeps nothing it does not hold pinned: the images
    must stay pinned from decoding to gathering; an unreadable file is an error (found
    before any prediction), not the pixels of another image."""
    from wjsentiment import config_context
    from wjsentiment.exceptions import BadImageError

    clf, X, _ = tiny
    with config_context(cache_memory_bytes=0, cache_disk_bytes=0):
        result = explain_images(clf, X[:3])
        np.testing.assert_array_equal(result.images, X[:3])
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"not an image")
        monkeypatch.setattr(clf, "predict_proba", lambda items: pytest.fail("predicted"))
        with pytest.raises(BadImageError, match="bad.png"):
            explain_images(clf, [X[0], str(bad)])


def test_save_explanations_slices_a_per_image_target_per_chunk(tiny, tmp_path):
    """One label per input, over chunks of two, with an unreadable file and a folder entry
    that could not be walked among them: each map explains its own input's label."""
    from PIL import Image

    from wjsentiment.datasets import SkippedEntry
    from wjsentiment.explain import save_explanations

    clf, X, _ = tiny
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(X[i]).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    inputs = [paths[0], str(tmp_path / "bad.png"), paths[1], SkippedEntry("locked", "no access"),
              paths[2], paths[3]]
    target = ["Positive", "Negative", "Negative", "Positive", "Positive", "Negative"]
    saved = save_explanations(clf, inputs, tmp_path / "out", target=target, batch_size=2)
    assert [(path, explained) for path, _, _, _, explained in saved.rows] == [
        (paths[0], "Positive"), (paths[1], "Negative"), (paths[2], "Positive"),
        (paths[3], "Negative")]
    assert [path for path, _ in saved.skipped] == [str(tmp_path / "bad.png"), "locked"]
    with pytest.raises(ValueError, match="6 labels for 5 inputs"):
        save_explanations(clf, inputs[:5], tmp_path / "again", target=target, batch_size=2)
    with pytest.raises(ValueError, match="6 labels for 5 inputs"):  # counted as they come
        save_explanations(clf, iter(inputs[:5]), tmp_path / "again", target=target,
                          batch_size=2)
    with pytest.raises(ValueError, match="5 labels for more inputs"):
        save_explanations(clf, iter(inputs), tmp_path / "again", target=target[:5],
                          batch_size=2)
