"""lightning_synth.rendering"""
