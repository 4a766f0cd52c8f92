"""Training progress as log lines, one per epoch: what the run log in the UI and the demo's
terminal show while a network trains (Keras' own progress bar writes to stdout only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SHOWN = ("loss", "accuracy", "val_loss", "val_accuracy")


def epoch_logger(log: Callable[[str], None], label: str, max_epochs: int) -> Any:
    """A Keras callback that calls ``log`` after each epoch with its losses and the time."""
    import keras

    class _EpochProgress(keras.callbacks.Callback):
        began = 0.0

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            values = logs or {}
            figures = ", ".join(f"{k} {float(values[k]):.4f}" for k in SHOWN if k in values)
            seconds = time.perf_counter() - self.began
            log(f"{label}: epoch {epoch + 1} (of at most {max_epochs}): {figures}; {seconds:.0f} s")

    return _EpochProgress()
