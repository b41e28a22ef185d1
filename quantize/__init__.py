"""dhm.quantize: FP16 and INT8 variants calibrated on held-out frames (`dhm quantize`).

Importing this package is cheap; the work imports torch, onnxruntime and MNN's tools.
"""
