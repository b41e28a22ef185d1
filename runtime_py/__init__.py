"""dhm.runtime_py: the reference runtime the Android and iOS demos mirror.

`engines` (every backend behind one registry: `load`, `build_and_validate`), `pipeline` (the
frame loop, `AvatarPipeline`, `StreamSession`, `PcmSession`), `streaming` (PCM -> feature
frames), `video`, `golden` and `app_assets`. Bench measures this loop; `dhm run`, `dhm golden`
and `dhm app-assets` are built on it.
"""

from dhm.runtime_py.engines import load
from dhm.runtime_py.pipeline import AvatarPipeline, StreamSession, pingpong

__all__ = ["AvatarPipeline", "StreamSession", "load", "pingpong"]
