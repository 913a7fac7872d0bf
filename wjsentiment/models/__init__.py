"""Backbones (timm), heads, the full network and the frozen-feature cache."""

from .backbones import (
    WEIGHT_PACKAGES,
    WeightsUnavailableError,
    check_backbone_name,
    create_backbone,
    lite0_package_weights,
    load_backbone_weights,
    package_weights,
    read_state_dict,
)
from .feature_files import feature_cache_dir, set_feature_cache_dir
from .features import clear_feature_cache, frozen_features
from .heads import HEADS, build_head
from .network import SentimentNet, build_network

__all__ = [
    "HEADS",
    "WEIGHT_PACKAGES",
    "SentimentNet",
    "WeightsUnavailableError",
    "build_head",
    "build_network",
    "check_backbone_name",
    "clear_feature_cache",
    "create_backbone",
    "feature_cache_dir",
    "frozen_features",
    "lite0_package_weights",
    "load_backbone_weights",
    "package_weights",
    "read_state_dict",
    "set_feature_cache_dir",
]
