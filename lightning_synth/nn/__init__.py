"""Building blocks: backbones, heads, layers and losses (plain ``nn.Module``s)."""

from lightning_synth.nn.backbones import DigitConvNet, feature_dim

__all__ = ["DigitConvNet", "feature_dim"]
