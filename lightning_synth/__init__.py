"""lightning-synth: train on rendered images, work on real images."""

import atexit
from importlib.metadata import PackageNotFoundError, version

from lightning_synth.distributed import close_process_group

try:
    __version__ = version("lightning-synth")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# Every process, DDP workers included, closes its process group before the interpreter
# tears gloo's threads down (lightning_synth.distributed).
atexit.register(close_process_group)

__all__ = ["__version__"]
