"""Plots: training curves, confusion matrix, reliability diagram, class distribution, heat-map
explanations; and an atomic figure save.

Figures are built with :class:`matplotlib.figure.Figure` rather than pyplot, so the functions
work on any backend (Agg included), keep no global state and show once in notebooks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .evaluation import (
    CALIBRATION_BINS,
    EvaluationReport,
    expected_calibration_error,
    reliability_table,
)
from .exceptions import InputError
from .labels import ordinal_labels
from .persistence import atomic_file

#: (panel title, history key suffix, y-axis label) of the three training-curve panels. The
#: loss is the network's, before the temperature and class-frequency adjustment of calibration.
CURVE_PANELS: tuple[tuple[str, str, str], ...] = (
    ("Loss", "loss", "cross-entropy, before calibration"),
    ("Accuracy", "accuracy", "accuracy"),
    ("Macro-F1", "f1", "macro-F1"))

#: What each ``normalize`` of the confusion matrix divides by.
_NORMALIZE = {None: "", "true": "true classes (rows: recall)",
              "pred": "predicted classes (columns: precision)", "all": "all images"}


def plot_training_curves(history: Any, *, axes: Sequence[Axes] | None = None,
                         title: str | None = None) -> Figure:
    """Loss, accuracy and macro-F1 per epoch, training vs validation, in three panels.

    The loss is the network's cross-entropy before calibration: the temperature and the
    class-frequency adjustment are fitted after training, so they are not in ``history_``.
    The training curves are measured on the (augmented, class-weighted) training batches,
    the validation curves on the held-out split.

    Parameters
    ----------
    history : list of dict, or a fitted estimator with ``history_``
        One entry per epoch with ``train_loss``, ``train_accuracy``, ``train_f1`` and,
        when a validation set was used, ``valid_loss``, ``valid_accuracy``, ``valid_f1``
        (the shape of :attr:`SentimentClassifier.history_`).
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; by default a new figure with three panels side by side.
    title : str, optional
        The figure's title. Default, on a new figure: "Training curves", followed by the
        backbone, fine-tuning mode and image size when ``history`` is an estimator; with
        ``axes``, none (the figure is yours).

    Returns
    -------
    matplotlib.figure.Figure
        The figure of the three panels (``axes``' figure when given).

    Raises
    ------
    ValueError
        If ``history`` is empty or lacks a training metric, or ``axes`` is not three Axes.

    Examples
    --------
    >>> history = [{"train_loss": 1.0, "train_accuracy": 0.5, "train_f1": 0.4},
    ...            {"train_loss": 0.7, "train_accuracy": 0.7, "train_f1": 0.6}]
    >>> fig = plot_training_curves(history)
    >>> len(fig.axes), fig.axes[0].get_ylabel()
    (3, 'cross-entropy, before calibration')
    """
    if title is None and axes is None:
        title = "Training curves" + _model_summary(history)
    if hasattr(history, "history_"):
        history = history.history_
    if not isinstance(history, Sequence) or isinstance(history, str) or len(history) == 0 \
            or not all(isinstance(entry, dict) for entry in history):
        raise InputError("history must be a non-empty list of per-epoch dicts (an estimator's "
                         "history_), e.g. clf.history_.")
    missing = [f"train_{key}" for _, key, _ in CURVE_PANELS
               if any(f"train_{key}" not in entry for entry in history)]
    if missing:
        raise InputError(f"history entries lack {missing}; pass an estimator's history_.")
    if axes is None:
        fig = Figure(figsize=(11, 3.6), layout="constrained")
        axes = fig.subplots(1, len(CURVE_PANELS))
    else:
        axes = list(axes)
        if len(axes) != len(CURVE_PANELS):
            raise InputError(f"axes must be {len(CURVE_PANELS)} Axes (loss, accuracy, "
                             f"macro-F1), got {len(axes)}.")
        fig = axes[0].figure
    epochs = np.arange(1, len(history) + 1)
    marker = 6 if len(epochs) < 15 else 3
    for ax, (panel, key, ylabel) in zip(axes, CURVE_PANELS):
        ax.plot(epochs, [entry[f"train_{key}"] for entry in history], marker="o",
                markersize=marker, label="train")
        valid = [entry.get(f"valid_{key}") for entry in history]
        if all(v is not None for v in valid):
            ax.plot(epochs, valid, marker="o", markersize=marker, label="valid")
        ax.set(title=panel, xlabel="epoch", ylabel=ylabel)
        ax.grid(alpha=0.3)
        if len(epochs) < 15:
            ax.set_xticks(epochs)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def _model_summary(estimator: Any) -> str:
    """": backbone, mode, size" of a fitted classifier, or "" for anything else."""
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    if "backbone" not in params:
        return ""
    mode = {"head": "head only", "full": "fine-tuned"}.get(params.get("finetune"), "")
    return ": " + ", ".join(str(part) for part in (
        params["backbone"], mode, f"{params.get('image_size')} px") if part)


def plot_confusion_matrix(report_or_y_true: Any, y_pred: Any = None, *,
                          labels: Sequence[Any] | None = None, normalize: str | None = None,
                          ax: Axes | None = None, title: str | None = None) -> Figure:
    """Confusion matrix, classes in ordinal order, drawn with ConfusionMatrixDisplay.

    Parameters
    ----------
    report_or_y_true : EvaluationReport or array-like of shape (n,)
        A report from :func:`wjsentiment.evaluation.evaluate`, or the true labels.
    y_pred : array-like of shape (n,), optional
        Predicted labels; required with true labels, not allowed with a report.
    labels : sequence, optional
        Classes and their order. Default: the report's labels, or the labels present in
        ``y_true`` and ``y_pred`` (ordinal order for sentiment labels, else sorted). With a
        report, a reordering of its labels.
    normalize : {None, "true", "pred", "all"}, default=None
        Show counts, or fractions over true classes (rows), predicted classes (columns) or
        all samples.
    ax : matplotlib Axes, optional
        Where to draw; by default a new figure.
    title : str, optional
        Default: "Confusion matrix of N images", the decision rule a report records (it
        chose the predicted labels), and what the fractions are normalized over.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax``'s figure when given).

    Raises
    ------
    ValueError
        For a bad ``normalize``, a missing or extra ``y_pred``, or unknown ``labels``.

    Examples
    --------
    >>> fig = plot_confusion_matrix(["Positive", "Negative"], ["Positive", "Positive"])
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['Negative', 'Positive']
    """
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    if normalize not in _NORMALIZE:
        raise InputError(f"normalize must be one of {list(_NORMALIZE)}, got {normalize!r}.")
    rule = None
    if isinstance(report_or_y_true, EvaluationReport):
        if y_pred is not None:
            raise InputError("Pass either a report or y_true and y_pred, not a report and "
                             "y_pred.")
        report, rule = report_or_y_true, report_or_y_true.decision_rule
        known = [str(v) for v in report.labels]
        labels = list(report.labels if labels is None else labels)
        if sorted(map(str, labels)) != sorted(known):
            raise InputError(f"labels must reorder the report's labels {report.labels}, "
                             f"got {[str(v) for v in labels]}.")
        order = [known.index(str(v)) for v in labels]
        cm = np.asarray(report.confusion_matrix)[np.ix_(order, order)]
    else:
        if y_pred is None:
            raise InputError("y_pred is missing: pass y_true and y_pred, or an "
                             "EvaluationReport.")
        y_true, y_pred = np.asarray(report_or_y_true), np.asarray(y_pred)
        if y_true.shape != y_pred.shape or y_true.ndim != 1:
            raise InputError(f"y_true and y_pred must be 1-D of the same length, got shapes "
                             f"{y_true.shape} and {y_pred.shape}.")
        if labels is None:
            labels = ordinal_labels(sorted(set(y_true.tolist()) | set(y_pred.tolist()),
                                           key=str))
        cm = confusion_matrix(y_true, y_pred, labels=list(labels))
    n = int(cm.sum())
    if normalize is not None:
        axis = {"true": 1, "pred": 0, "all": None}[normalize]
        with np.errstate(invalid="ignore", divide="ignore"):
            cm = np.nan_to_num(cm / cm.sum(axis=axis, keepdims=True))
    fig, ax = _figure_and_axes(ax, (6.5, 5.5))
    display = ConfusionMatrixDisplay(confusion_matrix=cm, display_labels=[str(v) for v in labels])
    display.plot(ax=ax, xticks_rotation=30, values_format=None if normalize is None else ".2f",
                 colorbar=True, cmap="Blues")
    ax.set_title(title or f"Confusion matrix of {n} images"
                 + (f", {rule} decision rule" if rule else "")
                 + ("" if normalize is None else f",\nnormalized over {_NORMALIZE[normalize]}"))
    return fig


def plot_reliability_diagram(y_true: Any, proba: Any, classes: Sequence[Any], *,
                             n_bins: int = CALIBRATION_BINS, ax: Axes | None = None,
                             title: str | None = None) -> Figure:
    """Reliability diagram: how often the model is right against how confident it is.

    One bar per equal-width bin of the top predicted probability, as high as the accuracy
    of the predictions in it, beside the diagonal a calibrated model follows. A hatched box
    spans the gap from each bar's accuracy to the bin's mean confidence, drawn over the bar
    so that both stay visible: a box above the bar means over-confidence, a box inside it
    under-confidence. Each bin is labelled with its number of samples; the title gives the
    expected calibration error.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        True labels.
    proba : array-like of shape (n, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : sequence
        The model's ``classes_``.
    n_bins : int, default=10
        Number of equal-width confidence bins between 0 and 1.
    ax : matplotlib Axes, optional
        Where to draw; by default a new figure.
    title : str, optional
        Default: "Reliability: ECE ... on N images".

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax``'s figure when given).

    Examples
    --------
    >>> fig = plot_reliability_diagram(["a", "b", "a"], [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]],
    ...                                ["a", "b"])
    >>> fig.axes[0].get_title()
    'Reliability: ECE 0.467 on 3 images'
    """
    table = reliability_table(y_true, proba, classes, n_bins=n_bins)
    ece = expected_calibration_error(y_true, proba, classes, n_bins=n_bins)
    fig, ax = _figure_and_axes(ax, (5.5, 5.0))
    width = 1.0 / n_bins
    bins = table[table["count"] > 0]  # an empty bin has no accuracy
    left, accuracy, confidence = bins["lower"], bins["accuracy"], bins["confidence"]
    ax.bar(left, accuracy, width=width, align="edge", color="#4c72b0", edgecolor="white",
           label="accuracy", zorder=2)
    ax.bar(left, confidence - accuracy, bottom=accuracy, width=width, align="edge",
           fill=False, hatch="///", edgecolor="#c44e52", linewidth=1.2,
           label="gap to mean confidence", zorder=3)
    for x, top, count in zip(left + width / 2, np.maximum(accuracy, confidence), bins["count"]):
        ax.annotate(f"{int(count)}", (x, top), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize="small")
    ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="calibrated",
            zorder=4)
    ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence (top predicted probability)",
           ylabel="accuracy",
           title=title or f"Reliability: ECE {ece:.3f} on {int(table['count'].sum())} images")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_class_distribution(y: Any, *, labels: Sequence[Any] | None = None,
                            ax: Axes | None = None, title: str | None = None) -> Figure:
    """Bar chart of the number of samples per class, in ordinal order.

    Parameters
    ----------
    y : array-like of shape (n,)
        Labels.
    labels : sequence, optional
        Classes to show, in order (absent ones show 0). Default: the classes in ``y``,
        ordinal order for sentiment labels, else sorted.
    ax : matplotlib Axes, optional
        Where to draw; by default a new figure.
    title : str, optional
        Default: "Class distribution (N samples)".

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax``'s figure when given).

    Raises
    ------
    ValueError
        If ``y`` is empty or not 1-D.

    Examples
    --------
    >>> fig = plot_class_distribution(["Positive", "Negative", "Positive"])
    >>> [int(bar.get_height()) for bar in fig.axes[0].patches]
    [1, 2]
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise InputError(f"y must be a non-empty 1-D array of labels, got shape {y.shape}.")
    values = y.tolist()
    if labels is None:
        labels = ordinal_labels(sorted(set(values), key=str))
    labels = list(labels)
    counts = [values.count(label) for label in labels]
    fig, ax = _figure_and_axes(ax, (7, 4))
    bars = ax.bar([str(v) for v in labels], counts, color="tab:blue")
    ax.bar_label(bars)
    ax.set(ylim=(0, max(max(counts), 1) * 1.12),  # room for the label of the highest bar
           ylabel="samples", title=title or f"Class distribution ({len(values)} samples)")
    ax.tick_params(axis="x", labelrotation=20)
    return fig


def plot_explanations(estimator: Any, X: Any, y: Any = None, *, target: Any = "predicted",
                      layer: str | None = None, batch_size: int | None = None,
                      alpha: float = 0.5, cmap: str = "jet", ncols: int = 4,
                      title: str | None = None) -> Figure:
    """A grid of images with their Grad-CAM heat maps overlaid.

    Each panel is titled with the predicted label and its probability, and with the true
    label when ``y`` is given (green when the prediction is right, red when wrong). The
    figure's title names the decision rule that chose the predicted labels.

    Parameters
    ----------
    estimator : SentimentClassifier or SentimentEnsemble
        Fitted.
    X : ImageInputs
        A sequence of image paths or PIL images, or a uint8 array of shape
        ``(n, height, width, 3)``.
    y : array-like of shape (n,), optional
        Their true labels.
    target, layer, batch_size
        As for :func:`wjsentiment.explain.grad_cam`.
    alpha, cmap
        As for :func:`~wjsentiment.explain.overlay_heatmap`.
    ncols : int, default=4
        Panels per row.
    title : str, optional
        Default: "Predictions (RULE decision rule) with Grad-CAM heat maps".

    Returns
    -------
    matplotlib.figure.Figure
        The grid, one panel per image.

    Raises
    ------
    ValueError
        If ``y`` does not hold one label per image, or ``ncols`` is not positive.

    Examples
    --------
    >>> from wjsentiment import SentimentClassifier
    >>> X = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    >>> y = ["Negative", "Positive"] * 2
    >>> clf = SentimentClassifier(weights=None, image_size=64, epochs=1, verbose=0,
    ...                           random_state=0).fit(X, y)
    >>> fig = plot_explanations(clf, X, y, ncols=2)
    >>> len(fig.axes), fig.get_suptitle()
    (4, 'Predictions (argmax decision rule) with Grad-CAM heat maps')
    """
    from .explain import explain_images, overlay_heatmap

    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise InputError(f"ncols must be a positive integer, got {ncols!r}.")
    result = explain_images(estimator, X, target=target, batch_size=batch_size, layer=layer)
    n = len(result.predicted)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (n,):
            raise InputError(f"y must hold one label per image ({n}), got shape {y.shape}.")
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(2.6 * cols, 2.9 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[n:]:  # the rest of the last row
        fig.delaxes(ax)
    for i, ax in enumerate(axes[:n]):
        ax.set_axis_off()
        ax.imshow(overlay_heatmap(result.images[i], result.heatmaps[i], alpha=alpha,
                                  cmap=cmap))
        caption = f"{result.predicted[i]} ({result.probability[i]:.2f})"
        colour = "black"
        if y is not None:
            caption += f"\ntrue: {y[i]}"
            colour = "#1b7a1b" if y[i] == result.predicted[i] else "#b3261e"
        if result.explained[i] != result.predicted[i]:
            caption += f"\nmap for: {result.explained[i]}"
        ax.set_title(caption, fontsize=9, color=colour)
    fig.suptitle(title or f"Predictions ({estimator.decision_rule_} decision rule) with "
                 "Grad-CAM heat maps")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, **savefig_kwargs: Any) -> str:
    """Save a figure atomically: written under a temporary name, then renamed into place.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save.
    path : path-like
        Target file; its suffix gives the format (``.png``, ``.pdf``, ``.svg``, ...) unless
        ``format`` is passed. Parent folders are created.
    **savefig_kwargs
        Passed to :meth:`matplotlib.figure.Figure.savefig` (``dpi``, ``format``, ...);
        ``bbox_inches`` defaults to "tight".

    Returns
    -------
    str
        The file written.

    Raises
    ------
    ValueError
        If ``path`` has no suffix and no ``format`` is given.

    Examples
    --------
    >>> import tempfile, os
    >>> fig = plot_class_distribution(["Neutral", "Positive"])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     os.path.getsize(save_figure(fig, os.path.join(d, "classes.png"))) > 0
    True
    """
    path = Path(path)
    fmt = savefig_kwargs.pop("format", None) or path.suffix.lstrip(".").lower()
    if not fmt:
        raise InputError(f"path {str(path)!r} has no suffix; add one (e.g. .png) or pass "
                         "format='png'.")
    savefig_kwargs.setdefault("bbox_inches", "tight")
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format=fmt, **savefig_kwargs)
    return str(path)


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


__all__ = ["CURVE_PANELS", "plot_class_distribution",
           "plot_confusion_matrix", "plot_explanations", "plot_reliability_diagram",
           "plot_training_curves", "save_figure"]
