"""DataModules and domain sources (installed as ``lightning_synth.datamodules``)."""

from lightning_synth.datamodules.digits import RenderedDigitsSource
from lightning_synth.datamodules.mixed import (
    DomainDataset,
    MixedDomainDataModule,
    MixedDomainSampler,
    to_format,
)
from lightning_synth.datamodules.digit_folder import DigitFolder
from lightning_synth.datamodules.real_digits import SklearnDigits, TorchvisionDigits
from lightning_synth.datamodules.sources import DomainSource

__all__ = [
    "DomainSource",
    "RenderedDigitsSource",
    "SklearnDigits",
    "TorchvisionDigits",
    "DigitFolder",
    "DomainDataset",
    "MixedDomainDataModule",
    "MixedDomainSampler",
    "to_format",
]
