"""Mark a run directory whose job crashed, so it never passes for a finished run."""

from __future__ import annotations

import traceback
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["FailureMarker", "FAILURE_FILE"]

#: Name of the file written into the run directory of a crashed job.
FAILURE_FILE = "FAILED.txt"


class FailureMarker(Callback):
    """On an exception in fit/validate/test/predict, write ``FAILED.txt`` into the run
    directory (when one was created) with the error, and say so.

    Lightning's checkpoints are written atomically, so a crash never leaves a
    half-written ``.ckpt``; this marker tells the user that the directory's
    ``last.ckpt`` (if any) is from an interrupted run.
    """

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if not trainer.is_global_zero or trainer.log_dir is None:
            return
        run_dir = Path(trainer.log_dir)
        if not run_dir.is_dir():
            return
        text = "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        )
        (run_dir / FAILURE_FILE).write_text(
            f"This run did not finish: {type(exception).__name__}: {exception}\n\n{text}"
        )
