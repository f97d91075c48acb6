"""``python -m lightning_synth`` is ``lightning-synth``."""

from lightning_synth.cli import main

main()
