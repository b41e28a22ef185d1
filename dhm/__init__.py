"""dhm: take a trained 2.5D talking-head generator and make it run on a phone.

Importing `dhm` is cheap: torch, onnxruntime and MNN are imported only by the stages
that need them.
"""

__version__ = "0.1.0"
