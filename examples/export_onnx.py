"""Export round trip: fit on emoji, export to ONNX, predict with onnxruntime, compare.

Fits a small EfficientNet-Lite0 classifier on the shipped emoji images, writes it to one
``.onnx`` file with ``export_onnx``, loads the file with ``load_onnx`` (onnxruntime, no
PyTorch in the graph) and predicts the held-out emoji from their paths. The exported graph
holds the normalisation, grayscale conversion and softmax, so its probabilities match
``predict_proba``; the script prints the largest difference. Needs the export extra:
``pip install "wjsentiment[export]"``.

Run::

    python examples/export_onnx.py            # about a minute on a laptop CPU
    python examples/export_onnx.py --smoke    # the same steps at a tiny size, seconds
"""

import argparse
import os
import tempfile

import numpy as np

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment, stratified_split
from wjsentiment.export import load_onnx
from wjsentiment.models import package_weights

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="tiny, fast run (for testing)")
args = parser.parse_args()

data = load_emoji_sentiment()
X, y = np.asarray(data.paths), data.target
train, test = stratified_split(y, (0.8, 0.2), groups=data.groups, random_state=0)
if args.smoke:  # a few images of each class
    train, test = train[::6], test[::5]

clf = SentimentClassifier(backbone="tf_efficientnet_lite0",
                          weights=package_weights("tf_efficientnet_lite0"),
                          finetune="head", image_size=32 if args.smoke else 128,
                          epochs=2 if args.smoke else 30, lr=3e-3, random_state=0, verbose=0)
clf.fit(X[train], y[train])

# 1. Export: one file, uint8 images in, probabilities out, classes in its metadata.
path = clf.export_onnx(os.path.join(tempfile.mkdtemp(prefix="wjsentiment-onnx-"), "model.onnx"))
print(f"Exported to {path} ({os.path.getsize(path) / 1e6:.1f} MB)")

# 2. Load and predict with onnxruntime, from paths (decoded and resized as the estimator does).
served = load_onnx(path)
print("Classes from the metadata:", ", ".join(served.classes_))
onnx_proba = served.predict_proba(X[test])
torch_proba = clf.predict_proba(X[test])

# 3. Compare.
gap = np.abs(onnx_proba - torch_proba).max()
agree = np.mean(served.predict(X[test]) == clf.predict(X[test]))
print(f"{len(test)} held-out emoji: largest probability difference {gap:.1e}, "
      f"same label for {agree:.0%}")
if gap <= 1e-4:
    print("ONNX and PyTorch agree")
else:
    raise SystemExit(f"ONNX and PyTorch differ by {gap:.1e}")
