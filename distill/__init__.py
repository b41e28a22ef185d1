"""dhm.distill: teacher -> smaller student, judged on held-out frames (`dhm train`, `dhm distill`)."""
