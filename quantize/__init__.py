"""dhm.quantize: FP16 and INT8 variants calibrated on held-out frames (`dhm quantize`)."""
