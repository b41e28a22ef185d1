"""dhm.app: the command line (`dhm`) and the demo orchestrator, the only layer that spans stages."""
