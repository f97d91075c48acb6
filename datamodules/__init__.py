"""DataModules and domain sources (installed as ``lightning_synth.datamodules``)."""

from lightning_synth.datamodules.base import DomainDataModule
from lightning_synth.datamodules.body import BodyDepthDataModule, RenderedBodySource
from lightning_synth.datamodules.datasets import (
    ConcatenatedDataset,
    DomainDataset,
    InterleavedDataset,
)
from lightning_synth.datamodules.depth_folder import DepthFolder
from lightning_synth.datamodules.digit_folder import DigitFolder
from lightning_synth.datamodules.digits import RenderedDigitsSource, StrokeDigitsSource
from lightning_synth.datamodules.framing import CanonicalFraming, canonical_frame
from lightning_synth.datamodules.generated import GeneratedSource
from lightning_synth.datamodules.images import ImageOptimizationDataModule, StyleTransferDataModule
from lightning_synth.datamodules.mixed import ImageFormat, MixedDomainDataModule, to_format
from lightning_synth.datamodules.noisy_images import NoisyImageDataModule, NoisyPhotographs  # noqa: F401
from lightning_synth.datamodules.real_digits import SklearnDigits, TorchvisionDigits
from lightning_synth.datamodules.sampling import (
    MixedDomainSampler,
    ResumableDataLoader,
    ResumesMidEpoch,
)
from lightning_synth.datamodules.sources import DepthSource, DomainSource

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
__all__ += ["DomainDataModule", "ConcatenatedDataset", "InterleavedDataset", "ImageFormat"]
__all__ += ["ResumableDataLoader", "ResumesMidEpoch", "CanonicalFraming", "canonical_frame"]
