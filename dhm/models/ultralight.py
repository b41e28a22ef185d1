"""Ultralight-compatible U-Net generator.

Module names, nesting and parameter shapes mirror Ultralight-Digital-Human's `unet.py`
`Model` (the variant with a 16-channel HuBERT input and the 8-frame audio window), so
its checkpoints load with `strict=True`. Unlike the original, channel widths are a
constructor argument, and the decoder's input widths are derived from what actually
arrives at each concat, so any five widths build (Ultralight hard-codes widths that only
add up for the doubling presets, and its wenet branch assumes w2 == 128).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dhm.spec import AUDIO_MODES, GeneratorSpec


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


class InConvDw(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.inconv = nn.Sequential(InvertedResidual(in_channels, out_channels, stride=1, use_res_connect=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # The name says maxpool; the downsampling is the stride-2 depthwise conv.
        self.maxpool_conv = nn.Sequential(DoubleConvDW(in_channels, out_channels, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConvDW(in_channels, out_channels, stride=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        # Sizes always match for 160x160 inputs; the pad keeps odd sizes working.
        dy = x2.shape[2] - x1.shape[2]
        dx = x2.shape[3] - x1.shape[3]
        if dy or dx:
            x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x1, x2], dim=1))


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
    """[B,16,32,32] -> [B,w4,10,10]."""

    def __init__(self, ch: Sequence[int]) -> None:
        super().__init__()
        c_in = AUDIO_MODES["hubert"].in_channels
        self.conv1 = InvertedResidual(c_in, ch[1], stride=1, use_res_connect=False)
        self.conv2 = InvertedResidual(ch[1], ch[2], stride=1, use_res_connect=False)
        self._build_tail(ch[2], ch[3], ch[4], conv3_stride=(2, 2))


class AudioConvWenet(_AudioConv):
    """[B,128,16,32] -> [B,w4,10,10].

    Ultralight's first block is InvertedResidual(w2, w2) with a skip, which only works
    when w2 equals the 128 wenet input channels. Here the first block maps 128 -> w2 and
    keeps the skip exactly when the widths allow it, so full-width checkpoints keep their
    keys and shapes and every other width still builds.
    """

    def __init__(self, ch: Sequence[int]) -> None:
        super().__init__()
        c_in = AUDIO_MODES["wenet"].in_channels
        self.conv1 = InvertedResidual(c_in, ch[2], stride=1, use_res_connect=c_in == ch[2])
        self.conv2 = InvertedResidual(ch[2], ch[2], stride=1, use_res_connect=True)
        self._build_tail(ch[2], ch[3], ch[4], conv3_stride=(1, 2))


class Model(nn.Module):
    """The avatar generator: (face [B,6,160,160], audio) -> out [B,3,160,160] in [0,1]."""

    def __init__(self, spec: GeneratorSpec | None = None) -> None:
        super().__init__()
        spec = spec or GeneratorSpec()
        self.spec = spec
        w0, w1, w2, w3, w4 = spec.widths
        self.n_channels = spec.face_channels
        self.audio_model = AudioConvHubert(spec.widths) if spec.mode == "hubert" else AudioConvWenet(spec.widths)
        self.fuse_conv = nn.Sequential(DoubleConvDW(2 * w4, w4, stride=1), DoubleConvDW(w4, w3, stride=1))
        self.inc = InConvDw(spec.face_channels, w0)
        self.down1 = Down(w0, w1)
        self.down2 = Down(w1, w2)
        self.down3 = Down(w2, w3)
        self.down4 = Down(w3, w4)
        # Each Up takes (previous decoder output, encoder skip); for the doubling presets
        # these equal Ultralight's ch[4], ch[3], ch[2], ch[1].
        self.up1 = Up(w3 + w3, w3 // 2)
        self.up2 = Up(w3 // 2 + w2, w2 // 2)
        self.up3 = Up(w2 // 2 + w1, w1 // 2)
        self.up4 = Up(w1 // 2 + w0, w0)
        self.outc = OutConv(w0, 3)

    def forward(self, x: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x, audio_feat))

    def features(self, x: torch.Tensor, audio_feat: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pre-sigmoid output and the intermediate maps distillation matches."""
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        fused = self.fuse_conv(torch.cat([x5, self.audio_model(audio_feat)], dim=1))
        u1 = self.up1(fused, x4)
        u2 = self.up2(u1, x3)
        u3 = self.up3(u2, x2)
        u4 = self.up4(u3, x1)
        return self.outc(u4), {"fuse": fused, "up1": u1, "up2": u2, "up3": u3, "up4": u4}

    def logits(self, x: torch.Tensor, audio_feat: torch.Tensor) -> torch.Tensor:
        return self.features(x, audio_feat)[0]


def build_model(spec: GeneratorSpec) -> Model:
    return Model(spec)
