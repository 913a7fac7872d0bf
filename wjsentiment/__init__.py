"""wjsentiment: image sentiment classification for scikit-learn users.

Classify images as Highly negative, Negative, Neutral, Positive or Highly positive with a
scikit-learn estimator around a fine-tuned timm backbone.
"""

from .ensemble import SentimentEnsemble
from .estimator import SentimentClassifier
from .labels import SENTIMENT_LABELS

__version__ = "0.1.0"

__all__ = ["SENTIMENT_LABELS", "SentimentClassifier", "SentimentEnsemble", "__version__"]
