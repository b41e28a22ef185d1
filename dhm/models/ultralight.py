"""Ultralight-compatible U-Net generator, in every upstream revision's layout.

Module names, nesting and parameter shapes mirror Ultralight-Digital-Human's `unet.py`
`Model` as the spec's revision had it (`dhm.spec.REVISIONS`), so each revision's
checkpoints load with `strict=True`:

* wrapped revisions (before 2026-05-23) hold `inc.inconv.0.*` and `downN.maxpool_conv.0.*`
  (an nn.Sequential around one block); 2026-05-23 holds `inc.inconv.*` and
  `downN.maxpool_conv.*`;
* the audio branch takes 2W (hubert) or 16W (wenet) channels for a window of W frames;
* the wenet branch is "narrow" in the first commit (conv1 -> w2, conv3 w2 -> w3) and
  "wide" from 2024-10-14 (conv1 -> w3, conv3 w3 -> w3), with conv1's skip connection
  only where upstream had one.

Unlike the original, channel widths are a constructor argument, and the decoder's input
widths are derived from what actually arrives at each concat, so any five widths build.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dhm.spec import FOLD, GeneratorSpec


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, optional skip."""

    def __init__(self, inp: int, oup: int, stride: int, use_res_connect: bool, expand_ratio: int = 2) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if use_res_connect and (inp != oup or stride != 1):
            raise ValueError("a residual block needs inp == oup and stride 1")
        hidden = inp * expand_ratio
        self.stride = stride
        self.use_res_connect = use_res_connect
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res_connect else y


class DoubleConvDW(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            InvertedResidual(in_channels, out_channels, stride=stride, use_res_connect=False),
            InvertedResidual(out_channels, out_channels, stride=1, use_res_connect=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


def _maybe_wrapped(block: nn.Module, wrapped: bool) -> nn.Module:
    return nn.Sequential(block) if wrapped else block


class InConvDw(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, wrapped: bool = True) -> None:
        super().__init__()
        self.inconv = _maybe_wrapped(
            InvertedResidual(in_channels, out_channels, stride=1, use_res_connect=False), wrapped
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, wrapped: bool = True) -> None:
        super().__init__()
        # The name says maxpool; the downsampling is the stride-2 depthwise conv.
        self.maxpool_conv = _maybe_wrapped(DoubleConvDW(in_channels, out_channels, stride=2), wrapped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


def pad_concat(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """The upsampled decoder map, padded to the skip's size (sizes always match for
    160x160 inputs; the pad keeps odd sizes working), concatenated before the skip."""
    dy = x2.shape[2] - x1.shape[2]
    dx = x2.shape[3] - x1.shape[3]
    if dy or dx:
        x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
    return torch.cat([x1, x2], dim=1)


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConvDW(in_channels, out_channels, stride=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.conv(pad_concat(self.up(x1), x2))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _AudioConv(nn.Module):
    """Shared tail of both audio encoders: -> [B, w4, 10, 10]."""

    relu: nn.ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.conv4(x)
        x = self.relu(self.bn5(self.conv5(x)))
        return self.conv7(self.conv6(x))

    def _build_tail(self, c2: int, c3: int, c4: int, conv3_stride: tuple[int, int]) -> None:
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3, padding=1, stride=conv3_stride)
        self.bn3 = nn.BatchNorm2d(c3)
        self.conv4 = InvertedResidual(c3, c3, stride=1, use_res_connect=True)
        self.conv5 = nn.Conv2d(c3, c4, kernel_size=3, padding=3, stride=2)
        self.bn5 = nn.BatchNorm2d(c4)
        self.relu = nn.ReLU()
        self.conv6 = InvertedResidual(c4, c4, stride=1, use_res_connect=True)
        self.conv7 = InvertedResidual(c4, c4, stride=1, use_res_connect=True)


class AudioConvHubert(_AudioConv):
    """[B, 2W, 32, 32] -> [B, w4, 10, 10]; the same in every revision."""

    def __init__(self, ch: Sequence[int], in_channels: int) -> None:
        super().__init__()
        self.conv1 = InvertedResidual(in_channels, ch[1], stride=1, use_res_connect=False)
        self.conv2 = InvertedResidual(ch[1], ch[2], stride=1, use_res_connect=False)
        self._build_tail(ch[2], ch[3], ch[4], conv3_stride=(2, 2))


class AudioConvWenet(_AudioConv):
    """[B, 16W, 16, 32] -> [B, w4, 10, 10].

    `branch` "narrow" (first commit): conv1 in -> w2, conv2 w2, conv3 w2 -> w3.
    `branch` "wide" (from 2024-10-14): conv1 in -> w3, conv2 w3, conv3 w3 -> w3.
    Upstream hard-codes conv1's skip (True until 2025-06-04, then False); a skip needs equal
    widths, so here it is kept exactly when upstream had it and the widths allow it.
    """

    def __init__(self, ch: Sequence[int], in_channels: int, branch: str, conv1_residual: bool) -> None:
        super().__init__()
        if branch not in ("narrow", "wide"):
            raise ValueError(branch)
        mid = ch[2] if branch == "narrow" else ch[3]
        self.conv1 = InvertedResidual(in_channels, mid, stride=1, use_res_connect=conv1_residual and in_channels == mid)
        self.conv2 = InvertedResidual(mid, mid, stride=1, use_res_connect=True)
        self._build_tail(mid, ch[3], ch[4], conv3_stride=(1, 2))


class UNet(nn.Module):
    """The forward pass both families share: encoder, audio fusion at 10x10, decoder.

    With the full stem the first level runs at 160x160 (`inc`, `down1` ... `up4`); with the s2d
    stem the face is folded to 24 channels at 80x80, `inc` starts at the second level (width
    w1), `up3` paints with w0 channels, `outc`'s 12 channels unfold into 3x160x160 and `smooth`
    (3x3, 3 channels) joins the unfolded 2x2 blocks.
    """

    folded: bool

    def _fold_modules(self, spec: GeneratorSpec) -> None:
        self.folded = spec.folded
        if self.folded:
            self.to_depth = nn.PixelUnshuffle(FOLD)
            self.to_space = nn.PixelShuffle(FOLD)
            # Each 2x2 block's pixels come from one position's 12 channels: alone they learn a
            # faint checkerboard at the lips' edges. One 3x3 convolution on the 3 output channels
            # (2 MMACs; its time on MNN is within noise) joins neighbouring blocks. It starts as the identity.
            self.smooth = nn.Conv2d(3, 3, 3, padding=1)
            nn.init.dirac_(self.smooth.weight)
            nn.init.zeros_(self.smooth.bias)

    def forward(self, x: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x, audio_feat))

    def features(self, x: torch.Tensor, audio_feat: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pre-sigmoid output and the intermediate maps distillation matches."""
        if self.folded:
            x1, x2 = None, self.inc(self.to_depth(x))
        else:
            x1 = self.inc(x)
            x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        fused = self.fuse_conv(torch.cat([x5, self.audio_model(audio_feat)], dim=1))
        u1 = self.up1(fused, x4)
        u2 = self.up2(u1, x3)
        u3 = self.up3(u2, x2)
        maps = {"fuse": fused, "up1": u1, "up2": u2, "up3": u3}
        if x1 is None:
            return self.smooth(self.to_space(self.outc(u3))), maps
        u4 = self.up4(u3, x1)
        return self.outc(u4), {**maps, "up4": u4}

    def logits(self, x: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        return self.features(x, audio_feat)[0]


def stage_widths(spec: GeneratorSpec) -> tuple[int, int, int, int]:
    """(inc's input channels, inc's output channels, up3's output channels, outc's channels)."""
    w0, w1 = spec.widths[:2]
    if spec.folded:
        return spec.face_channels * FOLD * FOLD, w1, w0, 3 * FOLD * FOLD
    return spec.face_channels, w0, w1 // 2, 3


class Model(UNet):
    """The avatar generator: (face [B,6,160,160], audio) -> out [B,3,160,160] in [0,1]."""

    def __init__(self, spec: GeneratorSpec | None = None) -> None:
        super().__init__()
        spec = spec or GeneratorSpec()
        if spec.arch != "ultralight":
            raise ValueError(f"{spec.arch} is not the Ultralight family")
        self.spec = spec
        rev = spec.rev
        w0, w1, w2, w3, w4 = spec.widths
        self.n_channels = spec.face_channels
        audio_in = spec.audio.input_shape(spec.window)[0]
        if spec.mode == "hubert":
            self.audio_model: _AudioConv = AudioConvHubert(spec.widths, audio_in)
        else:
            self.audio_model = AudioConvWenet(spec.widths, audio_in, rev.wenet_branch, rev.wenet_conv1_residual)
        self.fuse_conv = nn.Sequential(DoubleConvDW(2 * w4, w4, stride=1), DoubleConvDW(w4, w3, stride=1))
        inc_in, inc_out, up3_out, out_channels = stage_widths(spec)
        self.inc = InConvDw(inc_in, inc_out, rev.wrapped)
        if not spec.folded:
            self.down1 = Down(w0, w1, rev.wrapped)
        self.down2 = Down(w1, w2, rev.wrapped)
        self.down3 = Down(w2, w3, rev.wrapped)
        self.down4 = Down(w3, w4, rev.wrapped)
        # Each Up takes (previous decoder output, encoder skip); for the doubling presets
        # these equal Ultralight's ch[4], ch[3], ch[2], ch[1].
        self.up1 = Up(w3 + w3, w3 // 2)
        self.up2 = Up(w3 // 2 + w2, w2 // 2)
        self.up3 = Up(w2 // 2 + w1, up3_out)
        if not spec.folded:
            self.up4 = Up(w1 // 2 + w0, w0)
        self.outc = OutConv(w0, out_channels)
        self._fold_modules(spec)
