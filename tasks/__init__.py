"""Tasks (installed as ``lightning_synth.tasks``): one file per task family."""

from lightning_synth.tasks.base import StepOutput, SynthTask
from lightning_synth.tasks.body_parts import BodyPartClassifier
from lightning_synth.tasks.classification import ImageClassifier
from lightning_synth.tasks.dann import DANN
from lightning_synth.tasks.denoise import Denoiser  # noqa: F401
from lightning_synth.tasks.gan import GAN
from lightning_synth.tasks.image_optimization import ImageOptimizationTask
from lightning_synth.tasks.style_transfer import StyleTransfer
from lightning_synth.tasks.tv_denoise import TVDenoise

__all__ = ["SynthTask", "StepOutput", "ImageClassifier"]
__all__ += ["DANN"]
__all__ += ["ImageOptimizationTask", "TVDenoise", "StyleTransfer"]
__all__ += ["GAN"]
__all__ += ["BodyPartClassifier"]
