"""Shared fixtures: a tiny synthetic data set, a tiny training config, and a sandboxed cache."""

from __future__ import annotations

import pytest
import torch

from polyp.config import TrainConfig
from polyp.data import PolypData, prepare_data, write_synthetic

SYNTHETIC_COUNT = 16
SYNTHETIC_SIZE = 32


@pytest.fixture(scope="session", autouse=True)
def polyp_cache(tmp_path_factory: pytest.TempPathFactory):
    """Points POLYP_CACHE at a temporary folder so no test writes to ~/.cache/polyp."""
    cache = tmp_path_factory.mktemp("polyp-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYP_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """Runs torch on one thread: on a shared, busy CPU more threads make tiny models many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory):
    """A Kvasir-SEG style folder of 16 synthetic 32 px images with exact masks (read-only: do not modify)."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), count=SYNTHETIC_COUNT, size=SYNTHETIC_SIZE)


@pytest.fixture(scope="session")
def synthetic_data(synthetic_dir) -> PolypData:
    """The synthetic folder decoded and split 8 train / 4 val / 4 test."""
    return prepare_data(synthetic_dir, SYNTHETIC_SIZE, seed=0, val_fraction=0.25, test_fraction=0.25, cache=False)


@pytest.fixture
def tiny_config() -> TrainConfig:
    """A config that trains in about a second on the CPU: LinkNet/ResNet-18, depth 3, 32 px, one epoch."""
    return TrainConfig(
        arch="linknet", encoder="resnet18", encoder_depth=3, encoder_weights="none", image_size=SYNTHETIC_SIZE,
        batch_size=4, epochs=1, augment="none", precision="fp32", channels_last=False, threads=1, seed=0,
        device="cpu",
    )
