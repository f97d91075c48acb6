"""Tasks (installed as ``lightning_synth.tasks``)."""
