"""Callbacks and logging helpers for TensorBoard."""

from lightning_synth.callbacks.bound_report import BoundReport
from lightning_synth.callbacks.embedding_projector import EmbeddingProjector
from lightning_synth.callbacks.gap_report import GapReport
from lightning_synth.callbacks.image_grid import labelled_image_grid, log_image
from lightning_synth.callbacks.model_selection import ModelSelection
from lightning_synth.callbacks.predictions import PredictionWriter
from lightning_synth.callbacks.run_status import FAILURE_FILE, FailureMarker

__all__ = [
    "labelled_image_grid",
    "log_image",
    "PredictionWriter",
    "FailureMarker",
    "FAILURE_FILE",
    "BoundReport",
    "EmbeddingProjector",
    "ModelSelection",
    "GapReport",
]
