"""dhm.export: torch -> ONNX (simplified, validated) -> MNN, with a manifest (`dhm export`)."""
