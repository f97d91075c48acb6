"""DataModules and domain sources (installed as ``lightning_synth.datamodules``)."""

from lightning_synth.datamodules.body import BodyDepthDataModule, DepthSource, RenderedBodySource
from lightning_synth.datamodules.depth_folder import DepthFolder
from lightning_synth.datamodules.digit_folder import DigitFolder
from lightning_synth.datamodules.digits import RenderedDigitsSource, StrokeDigitsSource
from lightning_synth.datamodules.generated import GeneratedSource
from lightning_synth.datamodules.images import ImageOptimizationDataModule, StyleTransferDataModule
from lightning_synth.datamodules.mixed import (
    DomainDataset,
    MixedDomainDataModule,
    MixedDomainSampler,
    to_format,
)
from lightning_synth.datamodules.real_digits import SklearnDigits, TorchvisionDigits
from lightning_synth.datamodules.sources import DomainSource

__all__ = [
    "DomainSource",
    "RenderedDigitsSource",
    "StrokeDigitsSource",
    "SklearnDigits",
    "TorchvisionDigits",
    "DigitFolder",
    "DomainDataset",
    "MixedDomainDataModule",
    "MixedDomainSampler",
    "to_format",
]
__all__ += ["ImageOptimizationDataModule", "StyleTransferDataModule"]
__all__ += ["BodyDepthDataModule", "DepthSource", "RenderedBodySource", "DepthFolder"]
__all__ += ["GeneratedSource"]
