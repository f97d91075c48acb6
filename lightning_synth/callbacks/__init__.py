"""lightning_synth.callbacks"""
