"""dhm.runtime_py: the reference runtime the Android and iOS demos mirror.

`engines` (every backend behind one registry: `load`, `build_and_validate`), `pipeline` (the
frame loop, `AvatarPipeline`, `StreamSession`), `streaming` (PCM -> feature frames), `session`
(`PcmSession`: PCM -> frames), `vad` and `idle` (voice activity; footage in silence), `video`,
`golden` and `app_assets`. Bench measures this loop; `dhm run`, `dhm golden`
and `dhm app-assets` are built on it.
"""

from dhm.lazy import lazy_attributes

# loaded on first use: `dhm --help` reads the registry's names without numpy or an engine
_LAZY = {
    "load": "dhm.runtime_py.engines",
    "AvatarPipeline": "dhm.runtime_py.pipeline",
    "StreamSession": "dhm.runtime_py.pipeline",
    "pingpong": "dhm.runtime_py.pipeline",
    "PcmSession": "dhm.runtime_py.session",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_attributes(_LAZY)
