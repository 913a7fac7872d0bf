"""Plots: the right panels, lines, bars and labels; PNGs written atomically."""

from __future__ import annotations

import os
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wjsentiment.evaluation import report_from_predictions
from wjsentiment.labels import SENTIMENT_LABELS
from wjsentiment.plotting import (
    plot_class_distribution,
    plot_confusion_matrix,
    plot_reliability_diagram,
    plot_training_curves,
    save_figure,
)

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(n_epochs, valid):
    history = []
    for e in range(n_epochs):
        entry = {"train_loss": 1.0 / (e + 1), "train_accuracy": 0.5 + e / 20,
                 "train_f1": 0.4 + e / 20, "lr": 1e-3, "seconds": 1.0}
        if valid:
            entry.update(valid_loss=1.2 / (e + 1), valid_accuracy=0.45 + e / 25,
                         valid_f1=0.35 + e / 25)
        history.append(entry)
    return history


def _ticks(ax, axis="x"):
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in ticks]


@pytest.mark.parametrize("valid, n_lines", [(True, 2), (False, 1)])
def test_training_curves_have_three_panels_train_and_valid(valid, n_lines):
    history = _history(4, valid)
    fig = plot_training_curves(history)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["Loss", "Accuracy", "Macro-F1"]
    for ax, key in zip(fig.axes, ["loss", "accuracy", "f1"]):
        assert len(ax.get_lines()) == n_lines
        train = ax.get_lines()[0]
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(train.get_ydata(), [h[f"train_{key}"] for h in history])
        if valid:
            np.testing.assert_allclose(ax.get_lines()[1].get_ydata(),
                                       [h[f"valid_{key}"] for h in history])
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == (["train", "valid"] if valid else ["train"])


def test_training_curves_say_what_model_and_which_loss():
    fig = plot_training_curves(_history(3, True))
    assert fig.axes[0].get_ylabel() == "cross-entropy, before calibration"
    assert fig.get_suptitle() == "Training curves"

    class Fitted:  # what plot_training_curves reads of a fitted classifier
        history_ = _history(3, True)

        def get_params(self, deep=True):
            return {"backbone": "resnet18", "finetune": "head", "image_size": 64}

    assert plot_training_curves(Fitted()).get_suptitle() == \
        "Training curves: resnet18, head only, 64 px"
    assert plot_training_curves(Fitted(), title="lite0").get_suptitle() == "lite0"


def test_training_curves_accept_an_estimator_and_given_axes():
    fig = Figure()
    axes = fig.subplots(1, 3)
    out = plot_training_curves(SimpleNamespace(history_=_history(2, True)), axes=axes)
    assert out is fig
    assert all(len(ax.get_lines()) == 2 for ax in axes)
    assert fig.get_suptitle() == ""  # the caller's figure keeps its own title
    with pytest.raises(ValueError, match="3 Axes"):
        plot_training_curves(_history(2, True), axes=axes[:2])


@pytest.mark.parametrize("history, match", [
    ([], "non-empty"),
    ([{"train_loss": 1.0}], "train_accuracy"),
    ("history", "non-empty"),
])
def test_training_curves_reject_bad_history(history, match):
    with pytest.raises(ValueError, match=match):
        plot_training_curves(history)


def _report():
    classes = np.array(sorted(SENTIMENT_LABELS))
    rng = np.random.default_rng(0)
    y = rng.choice(classes, 50)
    proba = rng.dirichlet(np.ones(5), 50)
    return report_from_predictions(y, proba, classes), y, classes[proba.argmax(axis=1)]


def test_confusion_matrix_from_a_report_is_in_ordinal_order():
    report, _, _ = _report()
    fig = plot_confusion_matrix(report)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert _ticks(ax) == list(SENTIMENT_LABELS)
    assert _ticks(ax, "y") == list(SENTIMENT_LABELS)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 25
    assert texts == [str(v) for v in report.confusion_matrix.ravel()]


def test_confusion_matrix_normalized_rows_sum_to_one():
    report, _, _ = _report()
    fig = plot_confusion_matrix(report, normalize="true")
    values = np.array([float(t.get_text()) for t in fig.axes[0].texts]).reshape(5, 5)
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=0.03)
    assert "normalized" in fig.axes[0].get_title()
    assert "50 images" in fig.axes[0].get_title() and "recall" in fig.axes[0].get_title()
    assert plot_confusion_matrix(report, title="lite0, argmax").axes[0].get_title() == \
        "lite0, argmax"


def test_confusion_matrix_names_the_decision_rule_of_a_report():
    report, y, y_pred = _report()
    assert report.decision_rule == "argmax"
    assert plot_confusion_matrix(report).axes[0].get_title() == \
        "Confusion matrix of 50 images, argmax decision rule"
    report.decision_rule = "balanced"
    assert "balanced decision rule" in plot_confusion_matrix(report).axes[0].get_title()
    assert "rule" not in plot_confusion_matrix(y, y_pred).axes[0].get_title()  # unknown


def test_confusion_matrix_from_labels_matches_the_report():
    report, y, y_pred = _report()
    fig = plot_confusion_matrix(y, y_pred)
    assert _ticks(fig.axes[0]) == list(SENTIMENT_LABELS)
    assert [t.get_text() for t in fig.axes[0].texts] == \
        [str(v) for v in report.confusion_matrix.ravel()]
    reordered = plot_confusion_matrix(report, labels=list(SENTIMENT_LABELS)[::-1])
    assert _ticks(reordered.axes[0]) == list(SENTIMENT_LABELS)[::-1]
    assert reordered.axes[0].texts[0].get_text() == str(report.confusion_matrix[-1, -1])


def test_confusion_matrix_bad_input():
    report, y, y_pred = _report()
    with pytest.raises(ValueError, match="y_pred is missing"):
        plot_confusion_matrix(y)
    with pytest.raises(ValueError, match="not a report and"):
        plot_confusion_matrix(report, y_pred)
    with pytest.raises(ValueError, match="normalize"):
        plot_confusion_matrix(y, y_pred, normalize="rows")


def test_class_distribution_bars_in_ordinal_order():
    y = ["Positive", "Neutral", "Positive", "Highly negative", "Positive"]
    fig = plot_class_distribution(y)
    ax = fig.axes[0]
    assert _ticks(ax) == ["Highly negative", "Neutral", "Positive"]
    assert [p.get_height() for p in ax.patches] == [1, 1, 3]
    fig = plot_class_distribution(y, labels=SENTIMENT_LABELS)
    assert [p.get_height() for p in fig.axes[0].patches] == [1, 0, 1, 3, 0]
    assert fig.axes[0].get_title() == "Class distribution (5 samples)"
    assert plot_class_distribution(y, title="train").axes[0].get_title() == "train"
    with pytest.raises(ValueError, match="non-empty"):
        plot_class_distribution([])


def _reliability_bars(ax):
    """The accuracy bars (filled) and the gap boxes (not filled) of a reliability diagram."""
    bars = [p for p in ax.patches if p.get_fill()]
    gaps = [p for p in ax.patches if not p.get_fill()]
    return bars, gaps


@pytest.mark.parametrize("right, confidence", [
    (10, 0.65),   # every prediction right at 65% confidence: accuracy above confidence
    (3, 0.95),    # 3 of 10 right at 95%: accuracy below confidence
])
def test_reliability_diagram_shows_accuracy_and_gap_in_both_directions(right, confidence):
    y_true = ["a"] * right + ["b"] * (10 - right)
    proba = [[confidence, 1 - confidence]] * 10     # always predicts "a"
    fig = plot_reliability_diagram(y_true, proba, ["a", "b"])
    ax = fig.axes[0]
    bars, gaps = _reliability_bars(ax)
    accuracy = right / 10
    assert len(bars) == 1 and len(gaps) == 1
    assert bars[0].get_height() == pytest.approx(accuracy)
    # The gap box spans accuracy..confidence, unfilled and drawn over the bar, so that the
    # bar's own height stays visible whichever is higher.
    assert sorted([gaps[0].get_y(), gaps[0].get_y() + gaps[0].get_height()]) == \
        pytest.approx(sorted([accuracy, confidence]))
    assert gaps[0].get_hatch() and gaps[0].get_zorder() > bars[0].get_zorder()
    # The sample count sits above both, not inside the gap box.
    (count,) = [t for t in ax.texts if t.get_text() == "10"]
    assert count.xy[1] == pytest.approx(max(accuracy, confidence))
    assert ax.get_title() == \
        f"Reliability: ECE {abs(confidence - accuracy):.3f} on 10 images"


def test_reliability_diagram_gap_does_not_hide_the_accuracy_when_rendered():
    # Accuracy 1.0 above confidence 0.55 (the bin 0.5-0.6): the bar's pixels between 0.55
    # and 1.0 stay mostly blue under the gap's hatching.
    fig = plot_reliability_diagram(["a"] * 10, [[0.55, 0.45]] * 10, ["a", "b"])
    ax = fig.axes[0]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    inside = ax.transData.transform([(0.55, y) for y in np.linspace(0.6, 0.95, 15)])
    rows = pixels.shape[0] - np.rint(inside[:, 1]).astype(int)
    cols = np.rint(inside[:, 0]).astype(int)
    bar_blue = np.array([0x4C, 0x72, 0xB0])
    blue = np.all(np.abs(pixels[rows, cols] - bar_blue) < 40, axis=1)
    assert blue.mean() >= 0.5, pixels[rows, cols]


def test_plots_draw_on_given_axes():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot_class_distribution(["a", "b"], ax=left) is fig
    report, _, _ = _report()
    assert plot_confusion_matrix(report, ax=right) is fig
    assert len(left.patches) == 2


def test_save_figure_writes_png_atomically(tmp_path):
    fig = plot_training_curves(_history(3, True))
    target = tmp_path / "plots" / "curves.png"
    assert save_figure(fig, target) == str(target)
    assert target.read_bytes()[:8] == PNG_MAGIC
    first_size = target.stat().st_size
    save_figure(plot_class_distribution(["Neutral"]), target)  # replaces
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert target.stat().st_size != first_size
    svg = save_figure(fig, tmp_path / "plots" / "curves.svg")
    assert open(svg).read(200).lstrip().startswith("<?xml")
    assert sorted(os.listdir(tmp_path / "plots")) == ["curves.png", "curves.svg"]


def test_save_figure_failure_leaves_nothing(tmp_path):
    fig = plot_class_distribution(["Neutral"])
    with pytest.raises(ValueError, match="suffix"):
        save_figure(fig, tmp_path / "curves")
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "curves.notaformat")
    assert os.listdir(tmp_path) == []
