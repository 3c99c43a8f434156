"""How the trainer talks outward: a Reporter is told each epoch's metrics and may ask to stop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class Reporter(Protocol):
    """Receives each finished epoch's metrics; returning True stops training ("stop now")."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool: ...


class Reporters:
    """Several reporters as one: every reporter hears every epoch; any of them may stop."""

    def __init__(self, reporters: Sequence[Reporter | None]):
        self.reporters = [r for r in reporters if r is not None]

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        return any([r.on_epoch_end(epoch, metrics) for r in self.reporters])  # list: call every one


class PrintReporter:
    """Prints one line per epoch."""

    def __init__(self, prefix: str = "", total_epochs: int | None = None):
        self.prefix, self.total = prefix, total_epochs

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        of = f"/{self.total}" if self.total else ""
        sets = "".join(f"  {name} {value:.4f}" for name, value in metrics.items()
                       if name.startswith("val_") and name.endswith("_mdice") and name != "val_mdice")
        objective = f"  objective {metrics['objective']:.4f}" if sets else ""
        print(
            f"{self.prefix}epoch {epoch}{of}  train_loss {metrics['train_loss']:.4f}  val_loss {metrics['val_loss']:.4f}  "
            f"val_mdice {metrics['val_mdice']:.4f}{sets}{objective}  lr {metrics['lr']:.2e}  "
            f"{metrics['images_per_second']:.1f} img/s",
            flush=True,
        )
        return False


class TensorBoardReporter:
    """Writes each epoch's numeric metrics as TensorBoard scalars (needs the tensorboard package)."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and name != "epoch":
                self.writer.add_scalar(name, value, epoch)
        self.writer.flush()
        return False
