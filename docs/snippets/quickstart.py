import numpy as np

from wjsentiment import SentimentClassifier
from wjsentiment.datasets import load_emoji_sentiment, stratified_split
from wjsentiment.evaluation import evaluate

data = load_emoji_sentiment()        # 922 images of 461 emoji, 5 labels, offline
X, y = np.asarray(data.paths), data.target
train, test = stratified_split(y, (0.8, 0.2), groups=data.groups,
                               random_state=0)   # whole emoji on one side

clf = SentimentClassifier(backbone="tf_efficientnet_lite0", image_size=96,
                          epochs=15, lr=2e-3, class_weight="balanced",
                          random_state=0)
clf.fit(X[train], y[train])
print(evaluate(clf, X[test], y[test]))   # accuracy, macro-F1, per class, ...
clf.save("emoji-model")   # reload: SentimentClassifier.load("emoji-model")
