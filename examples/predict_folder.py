"""Predict a folder: load a saved model, classify every image in a folder, write a CSV.

Shows ``SentimentClassifier.load`` and ``predict_proba`` on a folder of images, written to a
CSV with one row per image: its path, the predicted label and one probability column per
class. The CSV is written to a temporary file and renamed into place, so an interrupted run
never leaves half a file. (The command line does the same: ``wjsentiment predict MODEL
FOLDER --output predictions.csv``.)

Run::

    wjsentiment demo                                   # trains and saves runs/demo/model
    python examples/predict_folder.py runs/demo/model path/to/images --output predictions.csv
    python examples/predict_folder.py --smoke          # trains a tiny model first, seconds
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment
from wjsentiment.models import package_weights

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def train_tiny_model(path: Path) -> Path:
    """A seconds-long model on a few emoji, for --smoke."""
    X, y = load_emoji_sentiment(styles="google", return_X_y=True)
    clf = SentimentClassifier(backbone="tf_efficientnet_lite0",
                              weights=package_weights("tf_efficientnet_lite0"),
                              image_size=32, epochs=1, random_state=0, verbose=0)
    clf.fit(X[::10], y[::10])
    return Path(clf.save(path))


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", nargs="?", default="runs/demo/model",
                    help="saved model folder (default: the one `wjsentiment demo` writes)")
parser.add_argument("folder", nargs="?", help="images to classify (default: the emoji images)")
parser.add_argument("--output", default="predictions.csv", help="CSV file to write")
parser.add_argument("--batch-size", type=int, default=256, help="images per prediction step")
parser.add_argument("--smoke", action="store_true", help="train a tiny model first (testing)")
args = parser.parse_args()

model_path = Path(args.model)
output = Path(args.output)
if args.smoke:
    workdir = Path(tempfile.mkdtemp(prefix="wjsentiment-predict-"))
    model_path = train_tiny_model(workdir / "model")
    output = workdir / output.name
folder = Path(args.folder) if args.folder else Path(load_emoji_sentiment().paths[0]).parents[1]

clf = SentimentClassifier.load(model_path)
clf.set_params(verbose=0)
paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
if not paths:
    raise SystemExit(f"No images found in {folder}")
print(f"Classifying {len(paths)} images from {folder} with the model at {model_path}")

# Predict in batches, so a large folder never has to be decoded at once.
proba = np.concatenate([clf.predict_proba(paths[i:i + args.batch_size])
                        for i in range(0, len(paths), args.batch_size)])
table = pd.DataFrame(proba, columns=[f"proba_{c}" for c in clf.classes_])
table.insert(0, "label", clf.classes_[proba.argmax(axis=1)])
table.insert(0, "path", paths)

# Write atomically: a temporary file beside the target, then a rename.
output.parent.mkdir(parents=True, exist_ok=True)
fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
try:
    with os.fdopen(fd, "w", newline="") as fh:
        table.to_csv(fh, index=False)
    os.replace(tmp, output)
except BaseException:
    os.unlink(tmp)
    raise

print(table["label"].value_counts().to_string())
print(f"Wrote {len(table)} predictions to {output}")
