"""lightning-synth: train on rendered images, work on real images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lightning-synth")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
