"""Make docs/assets/predictions.png: held-out emoji with the demo ensemble's predictions.

Loads the calibrated ensemble that ``wjsentiment demo`` saved (``runs/demo/model``; run
``make demo`` first, or pass another folder) and shows eight emoji of the demo's own test split,
which the ensemble never saw, each titled with the predicted sentiment, the probability the
ensemble gives it, and the true label.

    python docs/make_figures.py [runs/demo/model]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from wjsentiment import SENTIMENT_LABELS, load  # noqa: E402
from wjsentiment.datasets import load_emoji_sentiment, stratified_split  # noqa: E402
from wjsentiment.demo import SPLIT_SEED, TEST_FRACTION  # noqa: E402
from wjsentiment.images import decode_image  # noqa: E402
from wjsentiment.plotting import save_figure  # noqa: E402

OUT = Path(__file__).parent / "assets" / "predictions.png"
MODEL = Path("runs/demo/model")


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


def main(model_dir: Path = MODEL) -> None:
    data = load_emoji_sentiment()
    paths, y = np.asarray(data.paths), np.asarray(data.target)
    _, test = stratified_split(y, (1 - TEST_FRACTION, TEST_FRACTION), groups=data.groups,
                               random_state=SPLIT_SEED)
    model = load(model_dir, device="cpu").set_params(verbose=0)
    for member in model.estimators_:
        member.set_params(verbose=0)
    proba = model.predict_proba(list(paths[test]))
    pred = model.predict_from_proba(proba)
    print(f"held-out accuracy: {np.mean(pred == y[test]):.2f} on {len(test)} images")

    fig = Figure(figsize=(8, 4.8), dpi=80, layout="tight")
    classes = list(model.classes_)
    for ax, i in zip(fig.subplots(2, 4).ravel(), pick_one_per_class(y[test], 8, seed=3)):
        ax.imshow(decode_image(paths[test][i], 64))   # transparency on white, as in training
        right = pred[i] == y[test][i]
        sure = proba[i, classes.index(pred[i])]
        ax.set_title(f"{pred[i]} ({sure:.0%})\ntrue: {y[test][i]}", fontsize=9,
                     color="#1b7a1b" if right else "#b3261e")
        ax.set_axis_off()
    save_figure(fig, OUT, bbox_inches=None)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL)
