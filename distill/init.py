"""Initialise a narrower student from its teacher by keeping the most important channels.

Every feature map of the student keeps a subset of the teacher's channels, chosen by
L1-norm importance: the L1 norm of the filter that produces the channel, times the
magnitude of the BatchNorm scale that follows it. The selections are threaded through
the network in forward order, so each conv gets the rows for its kept outputs and the
columns for its kept inputs; residual blocks keep their input selection (x + f(x) must
add like channels), and concatenations combine the selections of their parts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dhm.spec import GeneratorSpec

Sel = torch.Tensor  # sorted channel indices into the teacher's feature map


def _importance(state: Mapping[str, torch.Tensor], conv: str, bn: str | None) -> torch.Tensor:
    w = state[f"{conv}.weight"]
    score = w.abs().flatten(1).sum(1)
    if bn is not None:
        scale = state[f"{bn}.weight"].abs() / torch.sqrt(state[f"{bn}.running_var"] + 1e-5)
        score = score * scale
    return score


def _top(score: torch.Tensor, k: int) -> Sel:
    return torch.sort(torch.topk(score, k).indices).values


class _Transfer:
    def __init__(self, teacher: Mapping[str, torch.Tensor], student: dict[str, torch.Tensor]) -> None:
        self.t = teacher
        self.s = student
        self.copied: set[str] = set()

    def _set(self, key: str, value: torch.Tensor) -> None:
        assert self.s[key].shape == value.shape, (key, self.s[key].shape, value.shape)
        self.s[key] = value.clone()
        self.copied.add(key)

    def conv(self, name: str, rows: Sel, cols: Sel | None) -> None:
        w = self.t[f"{name}.weight"][rows]
        if cols is not None:  # None: depthwise (one input channel per group)
            w = w[:, cols]
        self._set(f"{name}.weight", w)
        if f"{name}.bias" in self.s:
            self._set(f"{name}.bias", self.t[f"{name}.bias"][rows])

    def bn(self, name: str, rows: Sel) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            self._set(f"{name}.{p}", self.t[f"{name}.{p}"][rows])
        self._set(f"{name}.num_batches_tracked", self.t[f"{name}.num_batches_tracked"].clone())

    def out_sel(self, conv: str, bn: str | None, width: int, forced: Sel | None = None) -> Sel:
        if forced is not None:
            return forced
        return _top(_importance(self.t, conv, bn), width)

    def inverted_residual(self, prefix: str, in_sel: Sel, out_width: int, residual: bool) -> Sel:
        hidden = self.s[f"{prefix}.conv.0.weight"].shape[0]
        h_sel = _top(_importance(self.t, f"{prefix}.conv.0", f"{prefix}.conv.1"), hidden)
        self.conv(f"{prefix}.conv.0", h_sel, in_sel)
        self.bn(f"{prefix}.conv.1", h_sel)
        self.conv(f"{prefix}.conv.3", h_sel, None)
        self.bn(f"{prefix}.conv.4", h_sel)
        out = self.out_sel(f"{prefix}.conv.6", f"{prefix}.conv.7", out_width, in_sel if residual else None)
        self.conv(f"{prefix}.conv.6", out, h_sel)
        self.bn(f"{prefix}.conv.7", out)
        return out

    def double(self, prefix: str, in_sel: Sel, out_width: int) -> Sel:
        mid = self.inverted_residual(f"{prefix}.0", in_sel, out_width, residual=False)
        return self.inverted_residual(f"{prefix}.1", mid, out_width, residual=True)

    def plain_conv_bn(self, conv: str, bn: str, in_sel: Sel, out_width: int) -> Sel:
        out = self.out_sel(conv, bn, out_width)
        self.conv(conv, out, in_sel)
        self.bn(bn, out)
        return out


def _width(state: Mapping[str, torch.Tensor], key: str) -> int:
    return int(state[key].shape[0])


def _wenet_conv1(spec: GeneratorSpec) -> tuple[int, bool]:
    """(output width, has a skip) of the wenet branch's first block (dhm.models.ultralight)."""
    rev = spec.rev
    mid = spec.widths[2] if rev.wenet_branch == "narrow" else spec.widths[3]
    c_in = spec.audio.input_shape(spec.window)[0]
    return mid, rev.wenet_conv1_residual and c_in == mid


def init_from_teacher(
    teacher_state: Mapping[str, torch.Tensor],
    teacher_spec: GeneratorSpec,
    student_spec: GeneratorSpec,
    student_state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], str]:
    """Return (student state, note). Falls back to the given state where shapes don't allow."""
    if (teacher_spec.arch, teacher_spec.mode, teacher_spec.revision) != (
        student_spec.arch,
        student_spec.mode,
        student_spec.revision,
    ):
        return student_state, "random (teacher is another family, mode or revision)"
    if teacher_spec.arch != "ultralight":
        return student_state, "random (channel transfer is implemented for the Ultralight family)"
    if teacher_spec.folded or student_spec.folded:
        return student_state, "random (an s2d stem has no first level to transfer channels into)"
    wider = [i for i, (s, t) in enumerate(zip(student_spec.widths, teacher_spec.widths, strict=True)) if s > t]
    if wider:
        return student_state, f"random (student wider than teacher at w{wider[0]})"
    x = _Transfer(teacher_state, dict(student_state))
    s = x.s
    w0, w1, w2, w3, w4 = student_spec.widths
    # Key prefixes of the revision's layout (an nn.Sequential around the block, or not).
    wrap = ".0" if student_spec.rev.wrapped else ""
    inc = f"inc.inconv{wrap}"
    all_in = torch.arange(s[f"{inc}.conv.0.weight"].shape[1])
    x1 = x.inverted_residual(inc, all_in, w0, residual=False)
    x2 = x.double(f"down1.maxpool_conv{wrap}.double_conv", x1, w1)
    x3 = x.double(f"down2.maxpool_conv{wrap}.double_conv", x2, w2)
    x4 = x.double(f"down3.maxpool_conv{wrap}.double_conv", x3, w3)
    x5 = x.double(f"down4.maxpool_conv{wrap}.double_conv", x4, w4)

    a_in = torch.arange(s["audio_model.conv1.conv.0.weight"].shape[1])
    if student_spec.mode == "hubert":
        a = x.inverted_residual("audio_model.conv1", a_in, w1, residual=False)
        a = x.inverted_residual("audio_model.conv2", a, w2, residual=False)
    else:
        s_mid, s_res = _wenet_conv1(student_spec)
        _, t_res = _wenet_conv1(teacher_spec)
        # A skip keeps the input's channel order, so its output selection is all inputs.
        forced = t_res and s_res
        a = x.inverted_residual("audio_model.conv1", a_in, s_mid, residual=forced)
        a = x.inverted_residual("audio_model.conv2", a, s_mid, residual=True)
    a = x.plain_conv_bn("audio_model.conv3", "audio_model.bn3", a, w3)
    a = x.inverted_residual("audio_model.conv4", a, w3, residual=True)
    a = x.plain_conv_bn("audio_model.conv5", "audio_model.bn5", a, w4)
    a = x.inverted_residual("audio_model.conv6", a, w4, residual=True)
    a = x.inverted_residual("audio_model.conv7", a, w4, residual=True)

    tw = teacher_spec.widths
    fused_in = torch.cat([x5, a + tw[4]])
    f = x.double("fuse_conv.0.double_conv", fused_in, w4)
    f = x.double("fuse_conv.1.double_conv", f, w3)
    u = x.double("up1.conv.double_conv", torch.cat([f, x4 + tw[3]]), w3 // 2)
    u = x.double("up2.conv.double_conv", torch.cat([u, x3 + tw[3] // 2]), w2 // 2)
    u = x.double("up3.conv.double_conv", torch.cat([u, x2 + tw[2] // 2]), w1 // 2)
    u = x.double("up4.conv.double_conv", torch.cat([u, x1 + tw[1] // 2]), w0)
    x.conv("outc.conv", torch.arange(3), u)

    missing = [k for k in s if k not in x.copied]
    if missing:
        raise AssertionError(f"channel transfer left {missing[0]} uninitialised")
    return s, "teacher channels kept by L1-norm importance"
