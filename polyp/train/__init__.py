"""Training one model: `fit(config, data, reporter)`; run `python -m polyp.train --help` for the CLI."""

from polyp.train.loop import TrainResult, evaluate, fit, train_one_epoch
from polyp.train.reporter import PrintReporter, Reporter, Reporters, TensorBoardReporter

__all__ = ["PrintReporter", "Reporter", "Reporters", "TensorBoardReporter", "TrainResult", "evaluate", "fit",
           "train_one_epoch"]
