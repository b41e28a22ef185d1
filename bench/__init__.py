"""dhm.bench: parity and latency against the full teacher, on this host and over adb (`dhm bench`)."""
