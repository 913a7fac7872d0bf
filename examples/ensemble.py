"""Ensemble: a soft vote of two small EfficientNet-Lite0 classifiers, on emoji never seen.

Shows ``SentimentEnsemble``: it fits each member, then (``weights="auto"``,
``calibrate=True``) fits a temperature per member and the members' weights on a held-out
part of the training data, and averages their class probabilities. The members here differ
in what they see: one fine-tunes the whole network on colour images, the other trains only a
head on frozen features of grayscale images. The example prints each member's and the
ensemble's scores on held-out emoji and saves the ensemble.

Run::

    python examples/ensemble.py            # about 5 minutes on a laptop CPU
    python examples/ensemble.py --smoke    # the same steps at a tiny size, seconds
"""

import argparse
import tempfile

import numpy as np

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment, stratified_split
from wjsentiment.ensemble import SentimentEnsemble
from wjsentiment.evaluation import evaluate
from wjsentiment.models import package_weights

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="tiny, fast run (for testing)")
args = parser.parse_args()

data = load_emoji_sentiment()
X, y = np.asarray(data.paths), data.target
train, test = stratified_split(y, (0.8, 0.2), groups=data.groups, random_state=0)
if args.smoke:  # a few images of each class
    train, test = train[::6], test[::5]

common = dict(
    backbone="tf_efficientnet_lite0",
    weights="imagenet" if not args.smoke else package_weights("tf_efficientnet_lite0"),
    class_weight="balanced",
    random_state=0,
    verbose=0,
)
tiny = args.smoke
ensemble = SentimentEnsemble(
    [
        ("colour_full", SentimentClassifier(finetune="full", image_size=32 if tiny else 96,
                                            epochs=1 if tiny else 10, lr=2e-3, **common)),
        ("gray_head", SentimentClassifier(finetune="head", grayscale=True,
                                          image_size=32 if tiny else 128,
                                          epochs=1 if tiny else 30, **common)),
    ],
    weights="auto",
    calibrate=True,
    validation_fraction=0.15,
)
ensemble.fit(X[train], y[train], groups=data.groups[train])  # holdout keeps emoji whole

print(f"{'model':<12} {'accuracy':>8} {'macro-F1':>8} {'log-loss':>8}")
for name, member in ensemble.named_estimators_.items():
    r = evaluate(member, X[test], y[test])
    print(f"{name:<12} {r.accuracy:8.3f} {r.macro_f1:8.3f} {r.log_loss:8.3f}")
r = evaluate(ensemble, X[test], y[test])
print(f"{'ensemble':<12} {r.accuracy:8.3f} {r.macro_f1:8.3f} {r.log_loss:8.3f}")
for name, weight, temperature in zip(ensemble.named_estimators_, ensemble.weights_,
                                     ensemble.temperatures_):
    print(f"{name}: weight {weight:.3f}, temperature {temperature:.3f}")

path = ensemble.save(tempfile.mkdtemp(prefix="wjsentiment-ensemble-") + "/ensemble")
print("Saved to", path, "- reload with SentimentEnsemble.load(path)")
