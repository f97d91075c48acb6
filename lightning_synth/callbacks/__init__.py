"""Callbacks and logging helpers for TensorBoard."""

from lightning_synth.callbacks.image_grid import labelled_image_grid, log_image
from lightning_synth.callbacks.predictions import PredictionWriter

__all__ = ["labelled_image_grid", "log_image", "PredictionWriter"]
