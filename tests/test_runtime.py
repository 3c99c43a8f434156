"""Runtime helpers: which convolutions leave bf16 autocast, and that the model stays the same model."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from polyp.config import TrainConfig
from polyp.models import build_model
from polyp.runtime import count_float32_convolutions, strided_depthwise_in_float32
from polyp.train.loop import TrainStep

CPU = torch.device("cpu")


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # ordinary
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # strided depthwise
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # stride-1 depthwise
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),  # strided grouped, not depthwise
    )


def test_only_strided_depthwise_convolutions_switch_and_compute_in_float32():
    net = small_net()
    assert strided_depthwise_in_float32(net, CPU, torch.bfloat16) == 1
    assert [type(m).__name__ for m in net] == ["Conv2d", "Float32Conv2d", "Conv2d", "Conv2d"]
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = net[0](x)
        assert first.dtype == torch.bfloat16
        assert net[1](first).dtype == torch.float32
        assert net[2](first).dtype == torch.bfloat16
    assert strided_depthwise_in_float32(net, CPU, torch.bfloat16) == 0  # already switched


def test_nothing_switches_outside_cpu_bf16():
    net = small_net()
    assert strided_depthwise_in_float32(net, CPU, None) == 0
    assert strided_depthwise_in_float32(net, torch.device("meta"), torch.bfloat16) == 0
    assert all(type(m) is nn.Conv2d for m in net)


def test_switched_model_keeps_its_weights_outputs_and_state_dict_names():
    cfg = TrainConfig(arch="linknet", encoder="mobilenet_v2", encoder_depth=4, image_size=32, encoder_weights="none")
    model = build_model(cfg).eval()
    before = copy.deepcopy(model)
    switched = strided_depthwise_in_float32(model, CPU, torch.bfloat16)
    assert switched == 4  # mobilenet_v2's stride-2 blocks in four stages
    assert count_float32_convolutions(model) == 4 and count_float32_convolutions(before) == 0
    assert list(model.state_dict()) == list(before.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), before(x))  # outside autocast: the same float32 computation
    assert type(copy.deepcopy(model).encoder.features[2].conv[1][0]).__name__ == "Float32Conv2d"


def test_the_trainer_switches_them_for_cpu_bf16_only():
    cfg = TrainConfig(arch="linknet", encoder="mobilenet_v2", encoder_depth=4, image_size=32, encoder_weights="none",
                      precision="bf16")
    names = {type(m).__name__ for m in TrainStep(cfg, build_model(cfg), CPU, 4).model.modules()}
    assert "Float32Conv2d" in names
    fp32 = dataclasses.replace(cfg, precision="fp32")
    assert "Float32Conv2d" not in {type(m).__name__ for m in TrainStep(fp32, build_model(fp32), CPU, 4).model.modules()}


def test_without_gradients_the_switched_layers_stay_in_bf16():
    net = small_net()
    strided_depthwise_in_float32(net, CPU, torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert net[1](net[0](torch.randn(2, 3, 16, 16))).dtype == torch.bfloat16
