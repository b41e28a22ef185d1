"""dhm.audio: the audio side of the core. `frontend` is dhm's log-mel front end (one definition:
offline features, the per-window reference and the exported network), `geometry` the streaming
geometry a manifest records, `teacher` Ultralight's HuBERT/wenet features, `student` and
`feather_hubert` the distilled audio encoders. The streaming itself is the runtime's
(`dhm.runtime_py.streaming`)."""
