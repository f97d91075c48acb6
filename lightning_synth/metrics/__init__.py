"""lightning_synth.metrics"""
