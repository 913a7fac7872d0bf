"""Grid search: tune a SentimentClassifier with scikit-learn's GridSearchCV, split by emoji.

Shows that the estimator is a plain scikit-learn classifier: ``GridSearchCV`` clones it, sets
parameters and fits it on each fold. With ``finetune="head"`` the backbone is frozen and its
features are computed once and cached by image content, so every fold and every candidate
reuses them and only the small head trains. ``GroupKFold`` keeps both drawings of an emoji in
the same fold, so the scores measure emoji the model has not seen.

Run::

    python examples/grid_search.py            # a few minutes on a laptop CPU
    python examples/grid_search.py --smoke    # the same steps at a tiny size, seconds
"""

import argparse

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, GroupKFold

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment, stratified_split
from wjsentiment.evaluation import evaluate
from wjsentiment.models import package_weights

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="tiny, fast run (for testing)")
args = parser.parse_args()

data = load_emoji_sentiment()
X, y, groups = np.asarray(data.paths), data.target, data.groups
train, test = stratified_split(y, (0.8, 0.2), groups=groups, random_state=0)
if args.smoke:  # a few images of each class
    train, test = train[::8], test[::5]

base = SentimentClassifier(
    backbone="tf_efficientnet_lite0",
    weights="imagenet" if not args.smoke else package_weights("tf_efficientnet_lite0"),
    finetune="head",
    image_size=128 if not args.smoke else 32,
    epochs=30 if not args.smoke else 1,
    random_state=0,
    verbose=0,
)
param_grid = {
    "lr": [1e-3, 3e-3],
    "head": ["linear", "mlp"],
    "class_weight": [None, "balanced"],
}
search = GridSearchCV(base, param_grid, scoring="f1_macro",
                      cv=GroupKFold(n_splits=5 if not args.smoke else 2), verbose=1)
search.fit(X[train], y[train], groups=groups[train])

results = pd.DataFrame(search.cv_results_).astype({"param_class_weight": str})
columns = ["param_lr", "param_head", "param_class_weight", "mean_test_score", "std_test_score"]
print(results[columns].sort_values("mean_test_score", ascending=False).to_string(index=False))
print("Best parameters:", search.best_params_)
print(f"Best cross-validated macro-F1: {search.best_score_:.3f}")

# GridSearchCV refitted the best candidate on all training emoji: score it on the held-out ones.
report = evaluate(search.best_estimator_, X[test], y[test])
print(f"Held-out emoji: accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
