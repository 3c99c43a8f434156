"""Model registry: every architecture at every depth, the combinations refused, encoder weight files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from polyp.architectures import ARCHITECTURES
from polyp.config import ARCHS, ConfigError, TrainConfig
from polyp.models import MODEL_CLASSES, build_model, count_parameters, is_buildable


def forward_shape(cfg: TrainConfig, size: int = 64) -> tuple[int, ...]:
    model = build_model(cfg).eval()
    with torch.no_grad():
        return tuple(model(torch.rand(1, 3, size, size)).shape)


@pytest.mark.parametrize("depth", [3, 4, 5])
@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_maps_images_to_one_logit_map(arch, depth):
    cfg = TrainConfig(arch=arch, encoder="resnet18", encoder_depth=depth, image_size=64)

    assert forward_shape(cfg) == (1, 1, 64, 64)


@pytest.mark.parametrize("encoder", ["mobilenet_v2", "efficientnet-b0"])
def test_other_encoders_build(encoder):
    cfg = TrainConfig(arch="unet", encoder=encoder, encoder_depth=5, image_size=64)

    assert forward_shape(cfg) == (1, 1, 64, 64)


def test_depth_changes_the_model():
    shallow = build_model(TrainConfig(arch="unet", encoder="resnet18", encoder_depth=3, image_size=64))
    deep = build_model(TrainConfig(arch="unet", encoder="resnet18", encoder_depth=5, image_size=64))

    assert count_parameters(shallow) < count_parameters(deep)


def test_scse_decoder_attention_on_unet():
    cfg = TrainConfig(arch="unet", encoder="resnet18", encoder_depth=3, image_size=64, decoder_attention="scse")

    model = build_model(cfg)

    assert any(type(module).__name__ == "SCSEModule" for module in model.modules())
    assert forward_shape(cfg) == (1, 1, 64, 64)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": "linknet", "decoder_attention": "scse"}, "decoder_attention: linknet has no decoder attention"),
        ({"arch": "attention_unet", "decoder_attention": "scse"},
         "decoder_attention: attention_unet has no decoder attention; scse works with unet, unetplusplus"),
        ({"arch": "unetplusplus", "encoder": "mit_b0"}, "encoder: .*unetplusplus does not support mit_b0"),
        ({"arch": "unet", "encoder": "mit_b0", "encoder_depth": 4}, "encoder_depth: mit_b0 exists only with depth 5"),
        ({"arch": "attention_unet", "encoder_weights": "imagenet"}, "encoder_weights: attention_unet has no ImageNet"),
        ({"arch": "unet", "encoder": "resnet999"}, "encoder: 'resnet999' is not one of .*resnet18"),
    ],
)
def test_unbuildable_combinations_are_refused_with_the_reason(changes, message):
    cfg = TrainConfig(**{"encoder": "resnet18", "image_size": 64, **changes})

    assert not is_buildable(cfg)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg)


def test_every_registered_architecture_has_a_model_class():
    assert set(MODEL_CLASSES) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_attention_is_accepted_exactly_where_the_registry_says(arch):
    cfg = TrainConfig(arch=arch, encoder="resnet18", encoder_depth=3, image_size=64, decoder_attention="scse")

    assert is_buildable(cfg) == ARCHITECTURES[arch].takes_decoder_attention


def encoder_weights_config(path) -> TrainConfig:
    return TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=3, image_size=64, encoder_weights=str(path))


def test_encoder_weights_load_from_a_safetensors_file(tmp_path):
    torch.manual_seed(1)
    source = build_model(encoder_weights_config("none"))
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.encoder.state_dict().items()}, str(path))

    torch.manual_seed(2)
    loaded = build_model(encoder_weights_config(path))
    torch.manual_seed(2)
    fresh = build_model(encoder_weights_config("none"))

    name = "layer1.0.conv1.weight"
    assert torch.equal(loaded.encoder.state_dict()[name], source.encoder.state_dict()[name])
    assert not torch.equal(fresh.encoder.state_dict()[name], source.encoder.state_dict()[name])
    # only the encoder comes from the file: the decoder keeps its own seeded initialisation
    assert torch.equal(next(loaded.decoder.parameters()), next(fresh.decoder.parameters()))


def test_encoder_weights_accept_whole_model_state_with_encoder_prefix(tmp_path):
    torch.manual_seed(3)
    source = build_model(encoder_weights_config("none"))
    path = tmp_path / "model.pth"
    torch.save(source.state_dict(), path)

    loaded = build_model(encoder_weights_config(path))

    assert torch.equal(loaded.encoder.conv1.weight, source.encoder.conv1.weight)


def test_attention_unet_loads_only_its_encoder_from_a_whole_model_file(tmp_path):
    cfg = TrainConfig(arch="attention_unet", encoder_depth=3, image_size=64)
    torch.manual_seed(4)
    source = build_model(cfg)
    path = tmp_path / "attention_unet.safetensors"
    save_file(source.state_dict(), str(path))

    torch.manual_seed(5)
    loaded = build_model(TrainConfig(arch="attention_unet", encoder_depth=3, image_size=64, encoder_weights=str(path)))

    assert torch.equal(loaded.encoder[0].body[0].weight, source.encoder[0].body[0].weight)
    assert not torch.equal(loaded.head.weight, source.head.weight)


def test_encoder_weights_that_do_not_fit_are_refused(tmp_path):
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"head.weight": torch.zeros(2, 2)}, str(unrelated))

    with pytest.raises(ConfigError, match="holds no weights that fit"):
        build_model(encoder_weights_config(unrelated))
    with pytest.raises(ConfigError, match="is not a file"):
        build_model(encoder_weights_config(tmp_path / "absent.safetensors"))
