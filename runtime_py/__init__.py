"""dhm.runtime_py: the reference runtime the Android and iOS demos mirror (`dhm run`, `dhm demo`)."""
