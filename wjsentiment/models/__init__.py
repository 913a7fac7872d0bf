"""Backbones (timm) and their weights, the network, and the frozen-feature cache.

Public: the network type of ``SentimentClassifier.model_``, the weight sources and their
errors, and the feature cache's settings. The rest (heads, network assembly, the feature
tables) is for the estimator; it stays importable from the submodules.
"""

from .backbones import (
    WEIGHT_PACKAGES,
    WeightsUnavailableError,
    create_backbone,
    package_weights,
    read_state_dict,
)
from .feature_files import feature_cache_dir
from .features import clear_feature_cache
from .features import frozen_features as frozen_features
from .heads import build_head as build_head
from .network import SentimentNet
from .network import build_network as build_network

__all__ = [
    "WEIGHT_PACKAGES",
    "SentimentNet",
    "WeightsUnavailableError",
    "clear_feature_cache",
    "create_backbone",
    "feature_cache_dir",
    "package_weights",
    "read_state_dict",
]
