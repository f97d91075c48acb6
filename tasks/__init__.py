"""Tasks (installed as ``lightning_synth.tasks``): one file per task family."""

from lightning_synth.tasks.base import StepOutput, SynthTask
from lightning_synth.tasks.classification import ImageClassifier

__all__ = ["SynthTask", "StepOutput", "ImageClassifier"]
