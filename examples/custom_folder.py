"""Your own images: train on a folder with one sub-folder per class.

Shows ``load_image_folder``, which reads the layout torchvision's ImageFolder uses::

    photos/
      negative/   a.jpg b.png ...
      neutral/    ...
      positive/   ...

Folder names that are sentiment labels (any spelling: ``highly_positive``, ``Positive``)
become the five canonical labels, ordered from most negative to most positive; any other
names are kept as they are. Without a folder argument the example first builds such a tree
from the shipped emoji images in a temporary folder.

Run::

    python examples/custom_folder.py path/to/photos
    python examples/custom_folder.py            # builds a small emoji folder first
    python examples/custom_folder.py --smoke    # the same steps at a tiny size, seconds
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment, load_image_folder, stratified_split
from wjsentiment.evaluation import evaluate
from wjsentiment.models import package_weights


def make_emoji_folder(root: Path, per_class: int) -> Path:
    """Copy up to ``per_class`` Twemoji images of each class into ``root/<label>/``."""
    emoji = load_emoji_sentiment(styles="twitter")
    for label in emoji.target_names:
        folder = root / label.lower().replace(" ", "_")  # e.g. highly_positive
        folder.mkdir(parents=True)
        paths = [p for p, t in zip(emoji.paths, emoji.target) if t == label][:per_class]
        for path in paths:
            shutil.copy(path, folder / Path(path).name)
    return root


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder", nargs="?", help="folder with one sub-folder per class")
parser.add_argument("--smoke", action="store_true", help="tiny, fast run (for testing)")
args = parser.parse_args()

if args.folder is None:
    workdir = tempfile.TemporaryDirectory(prefix="wjsentiment-folder-")  # removed at exit
    root = make_emoji_folder(Path(workdir.name) / "emoji", per_class=6 if args.smoke else 60)
    print("Built an example folder at", root)
else:
    root = Path(args.folder)

data = load_image_folder(root)
print(f"{len(data.paths)} images in {len(data.target_names)} classes:")
print(data.frame["label"].value_counts().reindex(data.target_names).to_string())

# Hold out 20% of each class for testing.
X, y = np.asarray(data.paths), data.target
train, test = stratified_split(y, (0.8, 0.2), random_state=0)

clf = SentimentClassifier(
    backbone="tf_efficientnet_lite0",
    weights="imagenet" if not args.smoke else package_weights("tf_efficientnet_lite0"),
    finetune="head",  # fast: the backbone stays frozen, only the head trains
    image_size=128 if not args.smoke else 32,
    epochs=30 if not args.smoke else 1,
    class_weight="balanced",
    random_state=0,
)
clf.fit(X[train], y[train])
report = evaluate(clf, X[test], y[test])
print(report)
print(f"Test accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
