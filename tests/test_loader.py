"""The trainer's loader: worker processes where they pay, reproducible batches, and the loader-only benchmark."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from polyp import bench
from polyp.config import ConfigError, TrainConfig
from polyp.train.loader import loader_workers, train_loader


@pytest.mark.parametrize("device, threads, cores, expected", [
    ("cpu", 0, 2, 0),  # training uses every core: augment in the main process, as before
    ("cpu", 1, 2, 0),  # one spare core is not worth a worker process
    ("cpu", 4, 16, 6),  # half of the 12 spare cores
    ("cpu", 2, 64, 8),  # at most 8
    ("cpu", 4, 2, 0),  # more threads than cores: still none
    ("cuda", 0, 16, 8),
    ("cuda", 0, 2, 1),
])
def test_auto_uses_workers_only_where_cores_are_spare_or_a_gpu_trains(device, threads, cores, expected):
    cfg = TrainConfig(threads=threads)
    assert loader_workers(cfg, torch.device(device), cpu_count=cores) == expected
    assert loader_workers(replace(cfg, loader_workers=3), torch.device(device), cpu_count=cores) == 3


def test_a_negative_worker_count_other_than_auto_is_refused():
    with pytest.raises(ConfigError, match="loader_workers"):
        TrainConfig(loader_workers=-2)


def _batches(cfg: TrainConfig, images, epochs: int = 2) -> list[torch.Tensor]:
    loader = train_loader(cfg, images, torch.Generator().manual_seed(cfg.seed))
    return [batch for _ in range(epochs) for batch, _ in loader]


def test_same_seed_and_worker_count_give_the_same_batches(synthetic_data):
    cfg = TrainConfig(image_size=32, batch_size=4, augment="heavy", seed=3, loader_workers=2)
    first, second = _batches(cfg, synthetic_data.train), _batches(cfg, synthetic_data.train)
    assert len(first) == 4 and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    other_seed = _batches(replace(cfg, seed=4), synthetic_data.train)
    assert not all(torch.equal(a, b) for a, b in zip(first, other_seed, strict=True))
    assert not torch.equal(first[0], first[2]), "the second epoch is augmented anew"


def test_workers_are_kept_across_epochs(synthetic_data):
    cfg = TrainConfig(image_size=32, batch_size=4, augment="light", loader_workers=1)
    loader = train_loader(cfg, synthetic_data.train, torch.Generator().manual_seed(0))
    assert loader.num_workers == 1 and loader.persistent_workers
    assert train_loader(replace(cfg, loader_workers=0), synthetic_data.train, torch.Generator()).num_workers == 0


def test_the_benchmark_prints_the_loader_only_rate_per_worker_count(synthetic_dir, capsys):
    assert bench.main(["--image-size", "32", "--batch-size", "4", "--threads", "1", "--loader-only", "--workers-sweep",
                       "1", "--loader-batches", "3", "--data", str(synthetic_dir)]) == 0
    report = capsys.readouterr().out
    rates = {int(n): float(r) for n, r in re.findall(r"loader only, (\d) worker\(s\): ([\d.]+) images/s", report)}
    assert set(rates) == {0, 1} and all(rate > 0 for rate in rates.values())
    assert re.search(r"loader only \(no model\), 0 worker\(s\) \(loader_workers -1 = auto\)", report)


def test_the_full_benchmark_names_the_bottleneck(synthetic_dir, capsys):
    assert bench.main(["--arch", "linknet", "--encoder", "resnet18", "--encoder-depth", "3", "--image-size", "32",
                       "--batch-size", "2", "--threads", "1", "--steps", "1", "--rounds", "1", "--warmup", "1",
                       "--peak-size", "128", "--predict-size", "32", "--predict-batch", "2", "--wait-steps", "2",
                       "--loader-batches", "2", "--data", str(synthetic_dir)]) == 0
    assert re.search(r"bottleneck at 32 px on cpu: (the model|the data pipeline) \(training step [\d.]+ images/s, "
                     r"loader [\d.]+ images/s\)", capsys.readouterr().out)
