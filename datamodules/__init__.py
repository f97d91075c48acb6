"""DataModules and domain sources (installed as ``lightning_synth.datamodules``)."""
