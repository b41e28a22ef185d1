"""dhm.runtime_py: the reference runtime the Android and iOS demos mirror (`dhm run`,
`dhm golden`, `dhm app-assets`).

Its engines (`dhm.engines.load`) and its frame loop (`dhm.pipeline.AvatarPipeline`,
`StreamSession`) live in the core, where bench measures the same loop; this package
renders videos, records golden vectors and bundles the apps' assets on top of them.
"""

from dhm.engines import load
from dhm.pipeline import AvatarPipeline, StreamSession, pingpong

__all__ = ["AvatarPipeline", "StreamSession", "load", "pingpong"]
