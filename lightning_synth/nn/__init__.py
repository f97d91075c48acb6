"""lightning_synth.nn"""
