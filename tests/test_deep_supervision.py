"""UNet++ with deep supervision: heads in training, the last head in prediction, checkpoints, search and CSV."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from optuna.trial import FixedTrial
from search_fixtures import tiny_spec

from polyp.checkpoint import load_checkpoint, save_checkpoint
from polyp.config import ConfigError, TrainConfig
from polyp.models import build_model
from polyp.onnx_export import export_onnx, onnx_max_difference
from polyp.train import fit
from polyp.train.loop import TrainStep
from search.study.space import suggest
from search.study.spreadsheet import SpreadsheetError, read_spreadsheet


def _config(**changes) -> TrainConfig:
    base = TrainConfig(arch="unetplusplus", encoder="resnet18", encoder_depth=3, encoder_weights="none", image_size=32,
                       batch_size=4, epochs=1, augment="none", precision="fp32", channels_last=False, threads=1,
                       seed=0, device="cpu", deep_supervision=True)
    return replace(base, **changes)


@pytest.mark.parametrize("depth, attention", [(3, "none"), (4, "none"), (5, "none"), (4, "scse")])
def test_training_returns_a_full_size_output_per_top_row_node_and_prediction_the_last(depth: int, attention: str):
    torch.manual_seed(0)
    model = build_model(_config(encoder_depth=depth, decoder_attention=attention))
    images = torch.randn(2, 3, 32, 32)
    heads = model.train()(images)
    assert tuple(heads.shape) == (depth - 1, 2, 1, 32, 32)  # X0,1 .. X0,n: one per nested depth
    model.eval()
    assert torch.equal(model(images), smp.UnetPlusPlus.forward(model, images)), "eval returns smp's own output"


def test_deep_supervision_is_refused_where_there_is_no_nested_decoder():
    with pytest.raises(ConfigError, match="deep_supervision: linknet has no nested decoder.*unetplusplus"):
        build_model(_config(arch="linknet"))


def test_channels_last_bf16_training_steps_through_every_head():
    cfg = _config(precision="bf16", channels_last=True, decoder_attention="scse")
    step = TrainStep(cfg, build_model(cfg), torch.device("cpu"), steps_per_epoch=1)
    loss = step.train(torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), torch.ones(2, 1, 32, 32))
    assert loss == loss and all(head.weight.grad is not None for head in step.model.deep_heads)


def test_a_copy_of_the_model_trains_its_own_heads():
    import copy

    model = build_model(_config())
    twin = copy.deepcopy(model).train()  # polyp.bench times copies of one model
    assert tuple(twin(torch.randn(2, 3, 32, 32)).shape) == (2, 2, 1, 32, 32)


def test_the_training_loss_is_the_mean_over_the_heads():
    cfg = _config()
    step = TrainStep(cfg, build_model(cfg), torch.device("cpu"), steps_per_epoch=1)
    logits, masks = torch.randn(2, 4, 1, 32, 32), (torch.rand(4, 1, 32, 32) > 0.5).float()
    expected = torch.stack([step.loss_fn(head, masks) for head in logits]).mean()
    assert torch.isclose(step.supervised_loss(logits, masks), expected)
    assert torch.isclose(step.supervised_loss(logits[0], masks), step.loss_fn(logits[0], masks))


def test_a_trained_model_checkpoints_as_a_plain_unetplusplus(synthetic_data, tmp_path: Path):
    cfg = _config()
    result = fit(cfg, synthetic_data)
    assert result.status == "completed" and len(result.history) == 1
    folder = save_checkpoint(result.model, cfg, tmp_path / "checkpoint")
    usage = json.loads((folder / "training.json").read_text())["deep_supervision"]
    assert usage["heads"] == 2 and usage["prediction_head"] == "last" and "from_pretrained" in usage["how_to_use"]
    loaded, info = load_checkpoint(folder)
    assert info.config.deep_supervision
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = result.model.eval()(images)
        assert torch.allclose(loaded(images), reference, atol=1e-6)
        assert torch.allclose(smp.from_pretrained(str(folder)).eval()(images), reference, atol=1e-6)
    onnx = export_onnx(loaded, cfg.image_size, tmp_path / "model.onnx")
    assert onnx_max_difference(loaded, onnx, cfg.image_size) < 1e-3


def test_the_search_samples_it_only_for_unetplusplus():
    spec = tiny_spec(arch=["unetplusplus", "linknet"], deep_supervision=[False, True])
    chosen = suggest(FixedTrial({"arch": "unetplusplus", "deep_supervision": True, "lr": 1e-3}), spec)
    assert chosen.deep_supervision
    other = FixedTrial({"arch": "linknet", "deep_supervision": True, "lr": 1e-3})
    assert not suggest(other, spec).deep_supervision


def test_a_spreadsheet_row_can_ask_for_it(tmp_path: Path):
    sheet = tmp_path / "rows.csv"
    sheet.write_text("arch,deep_supervision,lr\nunetplusplus,true,0.001\nunetplusplus,false,0.001\n")
    rows = read_spreadsheet(sheet, _config(deep_supervision=False)).rows
    assert [row.config.deep_supervision for row in rows] == [True, False]
    sheet.write_text("arch,deep_supervision\nlinknet,true\n")
    with pytest.raises(SpreadsheetError, match=r"row 1 \(line 2\), column 2 \(deep_supervision\).*no nested decoder"):
        read_spreadsheet(sheet, _config(deep_supervision=False))
