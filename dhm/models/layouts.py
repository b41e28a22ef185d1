"""Which generator a state_dict holds: family, upstream revision, audio mode, window, widths.

Everything is read from tensor names and shapes, so a raw Ultralight or FeatherTalk file
needs no side information:

* the family and key layout from where the first block's weights live
  (`inc.inconv.0.conv.*` wrapped Ultralight, `inc.inconv.conv.*` the 2026-05-23 layout,
  `inc.inconv.depthwise.*` FeatherTalk's MobileOne U-Net, trained or reparameterized);
* the widths from each encoder stage's output channels;
* the audio mode and window from the audio branch's input channels (2W hubert, 16W wenet);
* the wenet branch ("narrow" first commit, "wide" later) from conv1's output channels.

Several revisions can build the same network (hubert is unchanged between 2024-10-10
and 2025-06-15, for example); those read and run identically, and detection names the
latest of them and lists the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import torch

from dhm.errors import CheckpointError
from dhm.spec import (
    AUDIO_MODES,
    MOBILEONE_REVISION,
    REVISIONS,
    GeneratorSpec,
    WINDOWS,
    Revision,
    describe_window,
    stem_tag,
)


@dataclass(frozen=True)
class Layout:
    """Where one family/key-layout keeps the tensors detection reads."""

    name: str
    arch: str
    wrapped: bool
    reparameterized: bool
    width_keys: tuple[str, str, str, str, str]  # each stage's output channels (dim 0)
    audio_in_key: str
    audio_in_dim: int  # the dim of audio_in_key that holds the audio input channels
    wenet_mid_key: str  # the wenet branch's conv1 output channels (dim 0)
    stem: str = "full"

    def describe(self) -> str:
        return self.name


def _stage_keys(inc: str, down: str, up3: str, stem: str) -> tuple[str, str, str, str, str]:
    """Keys whose dim 0 holds w0 … w4. An s2d model has no down1: inc gives w1, and up3 paints
    with w0 channels."""
    if stem == "s2d":
        return (up3, inc, *(down.format(i) for i in range(2, 5)))  # type: ignore[return-value]
    return (inc, *(down.format(i) for i in range(1, 5)))  # type: ignore[return-value]


def _ultralight(wrapped: bool, stem: str = "full") -> Layout:
    w = ".0" if wrapped else ""
    name = "ultralight wrapped" if wrapped else "ultralight 2026-05-23"
    return Layout(
        name=name + stem_tag(stem),
        arch="ultralight",
        wrapped=wrapped,
        reparameterized=False,
        width_keys=_stage_keys(
            f"inc.inconv{w}.conv.6.weight",
            f"down{{}}.maxpool_conv{w}.double_conv.0.conv.6.weight",
            "up3.conv.double_conv.1.conv.6.weight",
            stem,
        ),
        audio_in_key="audio_model.conv1.conv.0.weight",
        audio_in_dim=1,
        wenet_mid_key="audio_model.conv1.conv.6.weight",
        stem=stem,
    )


def _mobileone(reparameterized: bool, stem: str = "full") -> Layout:
    leaf = "reparam_conv.weight" if reparameterized else "rbr_conv.0.conv.weight"
    return Layout(
        name="mobileone " + ("reparameterized" if reparameterized else "trained") + stem_tag(stem),
        arch="mobileone",
        wrapped=False,
        reparameterized=reparameterized,
        width_keys=_stage_keys(
            f"inc.inconv.pointwise.{leaf}",
            f"down{{}}.maxpool_conv.double_conv.0.pointwise.{leaf}",
            f"up3.conv.double_conv.1.pointwise.{leaf}",
            stem,
        ),
        # The depthwise block's output channels equal its input channels.
        audio_in_key=f"audio_model.conv1.depthwise.{leaf}",
        audio_in_dim=0,
        wenet_mid_key=f"audio_model.conv1.pointwise.{leaf}",
        stem=stem,
    )


# Full layouts first: an s2d layout's keys are a subset of a full one's (no down1, no up4).
LAYOUTS = tuple(
    make(form, stem) for stem in ("full", "s2d") for make in (_ultralight, _mobileone) for form in (True, False)
)


@dataclass(frozen=True)
class Detected:
    spec: GeneratorSpec
    reparameterized: bool  # a MobileOne state_dict in its inference form
    equivalent: tuple[str, ...]  # other revisions that build the same network

    def describe(self) -> str:
        """e.g. 'ultralight 2026-05-23 layout, hubert, 8-frame window (i-4 … i+3), INTER_AREA crops'."""
        text = self.spec.describe_conventions()
        if self.spec.arch == "mobileone":
            text += ", " + ("reparameterized" if self.reparameterized else "trained multi-branch") + " form"
        if self.spec.folded:
            text += ", s2d stem"
        if self.equivalent:
            text += f" (the same network as upstream {', '.join(self.equivalent)})"
        return text


def _wenet_branch(rev: Revision) -> tuple[str, bool]:
    return rev.wenet_branch, rev.wenet_conv1_residual


def equivalent_revisions(spec: GeneratorSpec) -> list[str]:
    """Every revision that builds the same network as `spec` and feeds it the same way
    (layout, window and, for wenet, the branch form)."""
    if spec.arch == "mobileone":
        return [spec.revision]
    rev = spec.rev
    out = []
    for r in REVISIONS.values():
        if r.wrapped != rev.wrapped or r.windows[spec.mode] != spec.window:
            continue
        if spec.mode == "wenet" and _wenet_branch(r) != _wenet_branch(rev):
            continue
        out.append(r.id)
    return out


def _matching_revisions(arch: str, wrapped: bool, mode: str, window: int, branch: str | None) -> list[Revision]:
    if arch == "mobileone":
        rev = REVISIONS[MOBILEONE_REVISION]
        return [rev] if rev.windows[mode] == window and branch in (None, "wide") else []
    return [
        r
        for r in REVISIONS.values()
        if r.wrapped == wrapped and r.windows[mode] == window and (branch is None or r.wenet_branch == branch)
    ]


def detect(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> Detected:
    """Family, revision, mode, window and widths of a state_dict, or one clear error."""
    layout = next((lay for lay in LAYOUTS if all(k in state for k in (*lay.width_keys, lay.audio_in_key))), None)
    if layout is None:
        raise CheckpointError(f"{source}: matches no Ultralight or FeatherTalk layout; {closest_layout(state)}")
    widths = tuple(int(state[k].shape[0]) for k in layout.width_keys)
    audio_in = int(state[layout.audio_in_key].shape[layout.audio_in_dim])
    mode = next((m.name for m in AUDIO_MODES.values() if m.window_of(audio_in) in WINDOWS), None)
    if mode is None:
        raise CheckpointError(
            f"{source}: the audio branch takes {audio_in} input channels; upstream models take "
            "16 or 32 (hubert, 8- or 16-frame window) or 128 or 256 (wenet)"
        )
    window = AUDIO_MODES[mode].window_of(audio_in)
    assert window is not None
    branch = None
    if mode == "wenet":
        mid = int(state[layout.wenet_mid_key].shape[0]) if layout.wenet_mid_key in state else -1
        branch = "narrow" if mid == widths[2] and mid != widths[3] else "wide"
    matches = _matching_revisions(layout.arch, layout.wrapped, mode, window, branch)
    if not matches:
        shape = f"{'wrapped' if layout.wrapped else 'unwrapped'} keys, {mode}, {describe_window(window)}"
        if branch:
            shape += f", {branch} wenet branch"
        raise CheckpointError(
            f"{source}: no upstream revision has this layout ({layout.name}: {shape}); {closest_layout(state)}"
        )
    # Revisions that build the same network read and run it identically; name the latest
    # whose training code could train this mode, and list the others.
    chosen = max(matches, key=lambda r: (mode in r.trained_modes, r.id))
    spec = GeneratorSpec(arch=layout.arch, mode=mode, widths=widths, revision=chosen.id, stem=layout.stem)  # type: ignore[arg-type]
    others = tuple(r.id for r in matches if r is not chosen)
    return Detected(spec=spec, reparameterized=layout.reparameterized, equivalent=others)


# ---------------------------------------------------------------- closest layout


@lru_cache(maxsize=None)
def _reference_keys(
    arch: str, revision: str, mode: str, reparameterized: bool
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    from dhm.models.build import build_model

    spec = GeneratorSpec(arch=arch, mode=mode, widths="full", revision=revision)
    model = build_model(spec, reparameterized=reparameterized)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def _candidates() -> list[tuple[str, str, str, bool, str]]:
    """(arch, revision, mode, reparameterized, label) for every layout dhm reads, latest first."""
    out = []
    for rev in reversed(list(REVISIONS.values())):
        for mode in AUDIO_MODES:
            out.append(
                ("ultralight", rev.id, mode, False, f"{rev.label}, {mode}, {describe_window(rev.windows[mode])}")
            )
    for reparam in (False, True):
        for mode in AUDIO_MODES:
            form = "reparameterized" if reparam else "trained"
            out.append(
                ("mobileone", MOBILEONE_REVISION, mode, reparam, f"FeatherTalk MobileOne U-Net ({form}), {mode}")
            )
    return out


def closest_layout(state: Mapping[str, torch.Tensor]) -> str:
    """'closest: <revision>; first difference: …' against every known layout at full widths:
    the layout sharing the most tensor names (then shapes) with `state`."""
    best = None
    for arch, rev, mode, reparam, label in _candidates():
        ref = _reference_keys(arch, rev, mode, reparam)
        missing = [(k, s) for k, s in ref if k not in state]
        differing = [(k, s) for k, s in ref if k in state and tuple(state[k].shape) != s]
        shared = len(ref) - len(missing)
        score = (-shared, -(shared - len(differing)))  # ties keep the latest layout
        if best is None or score < best[0]:
            best = (score, label, missing, differing, len(ref))
    assert best is not None
    _, label, missing, differing, total = best
    n_missing = len(missing)
    if n_missing == total:
        key, shape = missing[0]
        return (
            f"it shares no tensor name with any of them (the latest, {label}, starts with {key!r} "
            f"{list(shape)} at full widths)"
        )
    if missing:
        key, shape = missing[0]
        first = f"missing {key!r} {list(shape)}"
    elif differing:
        key, shape = differing[0]
        first = f"{key!r} is {list(state[key].shape)}, the layout has {list(shape)} at full widths"
    else:
        first = "none at full widths"
    return f"closest: {label} ({n_missing} of {total} tensors missing); first difference: {first}"
