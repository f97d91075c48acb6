"""Building blocks: backbones, heads, layers and losses (plain ``nn.Module``s)."""

from lightning_synth.nn.augment import RandomAffine
from lightning_synth.nn.backbones import DigitConvNet, feature_dim
from lightning_synth.nn.dct_shrinkage import DCTShrinkage
from lightning_synth.nn.denoisers import DnCNN, UNetDenoiser  # noqa: F401
from lightning_synth.nn.depth_features import DepthComparisonFeatures
from lightning_synth.nn.domain_adversarial import DomainClassifier, GaninDigitNet, MLPHead
from lightning_synth.nn.forest import DepthForest
from lightning_synth.nn.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    ExponentialMovingAverage,
    load_generator,
)
from lightning_synth.nn.gradient_reversal import GradientReversal, grad_reverse
from lightning_synth.nn.segmentation import DepthFCN, PixelClassifier
from lightning_synth.nn.style_losses import content_loss, gram_matrix, style_loss
from lightning_synth.nn.total_variation import (
    ChambollePockTV,
    TotalVariation,
    total_variation,
    tv_denoise,
)
from lightning_synth.nn.vgg import NamedFeatures, VGGFeatures, WeightsUnavailableError

__all__ = ["DigitConvNet", "feature_dim"]
__all__ += ["GradientReversal", "grad_reverse", "GaninDigitNet", "MLPHead", "DomainClassifier"]
__all__ += ["TotalVariation", "total_variation", "tv_denoise", "ChambollePockTV", "gram_matrix"]
__all__ += ["VGGFeatures", "NamedFeatures", "WeightsUnavailableError", "content_loss", "style_loss"]
__all__ += ["DCGANGenerator", "DCGANDiscriminator", "ExponentialMovingAverage", "load_generator"]
__all__ += ["DepthComparisonFeatures", "DepthFCN", "PixelClassifier", "DepthForest"]
__all__ += ["RandomAffine", "DCTShrinkage"]
