"""Reproduce the reference study: ResNet18 and ResNet152 on the CrowdFlower images, and both.

The study trained two models on the CrowdFlower "Image Sentiment Polarity" photos, split
80/15/5 (train/validation/test) per class, and reported on the test part:

==========  ================================================  =====  ========  ========
model       settings                                          loss   macro-F1  accuracy
==========  ================================================  =====  ========  ========
ResNet18    undersampled epochs, MLP head, 300 epochs,        0.72   0.75      0.75
            lr 1e-3, weight decay 1e-8
ResNet152   grayscale images, linear head, 20 epochs,         0.63   0.67      0.88
            lr 0.01, weight decay 0.005
==========  ================================================  =====  ========  ========

This script trains both configurations with ``SentimentClassifier`` (ImageNet weights, whole
network fine-tuned, 224 px, the backbone's own input normalisation), combines them in a
``SentimentEnsemble`` (equal-weight soft vote) and prints our numbers beside the study's.
Members are fitted once, inside the ensemble. Settings the study does not give (optimizer,
schedule, batch size) are the estimator's defaults: AdamW, cosine schedule, batches of 32.

It needs the photos (``wjsentiment download``; missing ones are fetched here) and a GPU:
300 epochs of ResNet18 on about 12,000 photos take hours on a GPU, far longer on a CPU.

Run::

    python examples/reproduce_reference_study.py --data-home data
    python examples/reproduce_reference_study.py --smoke   # emoji data, tiny sizes, offline
"""

import argparse

import numpy as np

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import fetch_image_sentiment, load_emoji_sentiment, stratified_split
from wjsentiment.ensemble import SentimentEnsemble
from wjsentiment.evaluation import evaluate

#: The study's test-set results: (loss, macro-F1, accuracy).
STUDY = {"resnet18": (0.72, 0.75, 0.75), "resnet152": (0.63, 0.67, 0.88)}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-home", default=None, help="where the CrowdFlower photos are stored")
parser.add_argument("--min-confidence", type=float, default=0.0,
                    help="keep photos whose label confidence is at least this")
parser.add_argument("--no-download", action="store_true",
                    help="use only the photos already on disk")
parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
parser.add_argument("--smoke", action="store_true",
                    help="run the same code on the shipped emoji images at a tiny size, offline")
args = parser.parse_args()

# ----------------------------------------------------------------------------- the data
if args.smoke:
    data = load_emoji_sentiment()
    X, y, groups = np.asarray(data.paths)[::8], data.target[::8], data.groups[::8]
else:
    data = fetch_image_sentiment(args.data_home, download=not args.no_download,
                                 min_confidence=args.min_confidence)
    if not data.paths:
        raise SystemExit("No CrowdFlower photos on disk: run `wjsentiment download` first.")
    X, y, groups = np.asarray(data.paths), data.target, None
# 80% train, 15% validation, 5% test, in the same proportions in every class. (Emoji come in
# two drawings each; for them whole emoji go to one part, so the test part does not leak.)
train, valid, test = stratified_split(y, (0.8, 0.15, 0.05), random_state=0, groups=groups)
print(f"{len(train)} training, {len(valid)} validation, {len(test)} test images")

# --------------------------------------------------------------------- the two models
resnet18 = SentimentClassifier(
    backbone="resnet18", head="mlp", sampling="undersample",
    epochs=300, lr=1e-3, weight_decay=1e-8,
)
resnet152 = SentimentClassifier(
    backbone="resnet152", head="linear", grayscale=True,
    epochs=20, lr=0.01, weight_decay=0.005,
)
for model in (resnet18, resnet152):
    model.set_params(image_size=224, weights="imagenet", device=args.device, random_state=0)
    if args.smoke:  # random weights, 32 px, one epoch: seconds on a CPU
        model.set_params(image_size=32, weights=None, epochs=1, verbose=0)

ensemble = SentimentEnsemble([("resnet18", resnet18), ("resnet152", resnet152)])
ensemble.fit(X[train], y[train])
ensemble.set_params(verbose=0)  # no progress bars between the rows of the table

# ---------------------------------------------------------------------------- results
header = (f"{'model':<10} {'valid F1':>8} | {'loss':>6} {'macro-F1':>8} {'accuracy':>8} | "
          f"{'study:':<6} {'loss':>5} {'macro-F1':>8} {'accuracy':>8}")
print(header)
print("-" * len(header))
models = [*ensemble.named_estimators_.items(), ("ensemble", ensemble)]
for name, model in models:
    v = evaluate(model, X[valid], y[valid])
    t = evaluate(model, X[test], y[test])
    study = STUDY.get(name)
    ref = (f"{'':<6} {study[0]:5.2f} {study[1]:8.2f} {study[2]:8.2f}" if study
           else f"{'':<6} {'-':>5} {'-':>8} {'-':>8}")
    print(f"{name:<10} {v.macro_f1:8.3f} | {t.log_loss:6.3f} {t.macro_f1:8.3f} "
          f"{t.accuracy:8.3f} | {ref}")
for name, model in ensemble.named_estimators_.items():
    print(f"{name} backbone weights: {model.weights_source_}")
