"""Backbones and heads: any timm model gets a head of the right width."""

from __future__ import annotations

import pytest
import torch

from wjsentiment.models import build_head, build_network


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv3_small_050", "test_convnext"])
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_network_outputs_one_logit_per_class(backbone, head):
    net, info = build_network({"backbone": backbone, "head": head, "n_classes": 5})
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert net.features(torch.rand(2, 3, 32, 32)).shape == (2, info["num_features"])


def test_mlp_head_is_the_reference_resnet18_head():
    head = build_head("mlp", 512, 5)
    assert [m.out_features for m in head if isinstance(m, torch.nn.Linear)] == [256, 128, 5]
    assert sum(isinstance(m, torch.nn.Tanh) for m in head) == 2
