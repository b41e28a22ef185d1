"""FeatherTalk's MobileOne U-Net (its `unet_mobileone.py`, July 2026), in dhm's terms.

The same U-Net topology and audio branches as the Ultralight 2026-05-23 revision, but
every InvertedResidual is a separable pair of MobileOne blocks: a 3x3 depthwise block
then a 1x1 pointwise block, each with ReLU. A MobileOne block is trained in a
multi-branch form (two conv+BN branches, a 1x1 conv+BN "scale" branch for 3x3 kernels,
and a BN identity branch where the shapes allow it, summed) and reparameterized into one
convolution with bias for inference (RepVGG/MobileOne: every branch is linear up to the
sum, so the branches fold into a single kernel).

Module names and nesting follow FeatherTalk's, so both its trained and its
reparameterized state_dicts load with `strict=True`; widths are a constructor argument
as in `dhm.models.ultralight`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dhm.models.ultralight import OutConv, UNet, pad_concat, stage_widths
from dhm.spec import GeneratorSpec

CONV_BRANCHES = 2


def _stride_is_one(stride: int | tuple[int, int]) -> bool:
    return stride == 1 or stride == (1, 1)


class MobileOneBlock(nn.Module):
    """conv(k, stride, groups) + activation, trained as a sum of branches."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int | tuple[int, int] = 1,
        padding: int = 0,
        groups: int = 1,
        branches: int = CONV_BRANCHES,
        reparameterized: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.groups = kernel_size, stride, padding, groups
        self.reparameterized = reparameterized
        self.activation = nn.ReLU()
        if reparameterized:
            self.reparam_conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=True
            )
            return
        # FeatherTalk compares the stride with 1, so a (1, 2) stride has no identity branch.
        self.rbr_skip = nn.BatchNorm2d(in_channels) if in_channels == out_channels and _stride_is_one(stride) else None
        self.rbr_conv = nn.ModuleList([self._conv_bn(kernel_size, padding) for _ in range(branches)])
        self.rbr_scale = self._conv_bn(1, 0) if kernel_size > 1 else None

    def _conv_bn(self, kernel_size: int, padding: int) -> nn.Sequential:
        branch = nn.Sequential()
        branch.add_module(
            "conv",
            nn.Conv2d(
                self.in_channels, self.out_channels, kernel_size, self.stride, padding, groups=self.groups, bias=False
            ),
        )
        branch.add_module("bn", nn.BatchNorm2d(self.out_channels))
        return branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparameterized:
            return self.activation(self.reparam_conv(x))
        # Summed in FeatherTalk's order (scale + identity, then the conv branches).
        out: torch.Tensor | int = 0
        if self.rbr_scale is not None:
            out = self.rbr_scale(x)
        if self.rbr_skip is not None:
            out = out + self.rbr_skip(x)
        for branch in self.rbr_conv:
            out = out + branch(x)
        return self.activation(out)  # type: ignore[arg-type]

    @torch.no_grad()
    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single kernel and bias this block's branches add up to (eval-mode BN)."""
        if self.reparameterized:
            return self.reparam_conv.weight.detach().clone(), self.reparam_conv.bias.detach().clone()
        kernel = torch.zeros_like(self.rbr_conv[0].conv.weight)
        bias = torch.zeros(self.out_channels, dtype=kernel.dtype)
        for branch in self.rbr_conv:
            k, b = _fold_bn(branch.conv.weight, branch.bn)
            kernel += k
            bias += b
        if self.rbr_scale is not None:
            k, b = _fold_bn(self.rbr_scale.conv.weight, self.rbr_scale.bn)
            pad = self.kernel_size // 2
            kernel += F.pad(k, [pad, pad, pad, pad])
            bias += b
        if self.rbr_skip is not None:
            # The identity as a kernel: 1 at the centre tap of each channel's own input.
            per_group = self.in_channels // self.groups
            eye = torch.zeros_like(kernel)
            for c in range(self.in_channels):
                eye[c, c % per_group, self.kernel_size // 2, self.kernel_size // 2] = 1.0
            k, b = _fold_bn(eye, self.rbr_skip)
            kernel += k
            bias += b
        return kernel, bias


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class MobileOneSeparableBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        residual: bool = False,
        reparameterized: bool = False,
    ) -> None:
        super().__init__()
        self.use_res_connect = residual and stride == 1 and in_channels == out_channels
        self.depthwise = MobileOneBlock(
            in_channels, in_channels, 3, stride, 1, groups=in_channels, reparameterized=reparameterized
        )
        self.pointwise = MobileOneBlock(in_channels, out_channels, 1, 1, 0, reparameterized=reparameterized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pointwise(self.depthwise(x))
        return x + out if self.use_res_connect else out


class DoubleConvMobileOne(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, reparameterized: bool = False) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            MobileOneSeparableBlock(in_channels, out_channels, stride=stride, reparameterized=reparameterized),
            MobileOneSeparableBlock(
                out_channels, out_channels, stride=1, residual=True, reparameterized=reparameterized
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class InConvMobileOne(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, reparameterized: bool = False) -> None:
        super().__init__()
        self.inconv = MobileOneSeparableBlock(in_channels, out_channels, stride=1, reparameterized=reparameterized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, reparameterized: bool = False) -> None:
        super().__init__()
        self.maxpool_conv = DoubleConvMobileOne(in_channels, out_channels, stride=2, reparameterized=reparameterized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, reparameterized: bool = False) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConvMobileOne(in_channels, out_channels, stride=1, reparameterized=reparameterized)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.conv(pad_concat(self.up(x1), x2))


class ConvBNAct(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class AudioConv(nn.Module):
    """hubert [B,2W,32,32] or wenet [B,16W,16,32] -> [B,w4,10,10]."""

    def __init__(self, mode: str, ch: tuple[int, ...], in_channels: int, reparameterized: bool) -> None:
        super().__init__()
        r = reparameterized
        if mode == "hubert":
            self.conv1 = MobileOneSeparableBlock(in_channels, ch[1], reparameterized=r)
            self.conv2 = MobileOneSeparableBlock(ch[1], ch[2], reparameterized=r)
            mid, stride = ch[2], (2, 2)
        else:  # wenet: the "wide" branch of the 2026-05-23 revision
            self.conv1 = MobileOneSeparableBlock(in_channels, ch[3], reparameterized=r)
            self.conv2 = MobileOneSeparableBlock(ch[3], ch[3], residual=True, reparameterized=r)
            mid, stride = ch[3], (1, 2)
        self.conv3 = MobileOneBlock(mid, ch[3], 3, stride, 1, reparameterized=r)
        self.conv4 = MobileOneSeparableBlock(ch[3], ch[3], residual=True, reparameterized=r)
        self.conv5 = ConvBNAct(ch[3], ch[4], kernel_size=3, stride=2, padding=3)
        self.conv6 = MobileOneSeparableBlock(ch[4], ch[4], residual=True, reparameterized=r)
        self.conv7 = MobileOneSeparableBlock(ch[4], ch[4], residual=True, reparameterized=r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6):
            x = layer(x)
        return self.conv7(x)


class MobileOneModel(UNet):
    """The FeatherTalk generator; `reparameterized` builds the inference form."""

    def __init__(self, spec: GeneratorSpec, reparameterized: bool = False) -> None:
        super().__init__()
        if spec.arch != "mobileone":
            raise ValueError(f"{spec.arch} is not the MobileOne family")
        self.spec = spec
        self.reparameterized = reparameterized
        r = reparameterized
        w0, w1, w2, w3, w4 = spec.widths
        self.audio_model = AudioConv(spec.mode, spec.widths, spec.audio.input_shape(spec.window)[0], r)
        self.fuse_conv = nn.Sequential(
            DoubleConvMobileOne(2 * w4, w4, stride=1, reparameterized=r),
            DoubleConvMobileOne(w4, w3, stride=1, reparameterized=r),
        )
        inc_in, inc_out, up3_out, out_channels = stage_widths(spec)
        self.inc = InConvMobileOne(inc_in, inc_out, reparameterized=r)
        if not spec.folded:
            self.down1 = Down(w0, w1, r)
        self.down2 = Down(w1, w2, r)
        self.down3 = Down(w2, w3, r)
        self.down4 = Down(w3, w4, r)
        self.up1 = Up(w3 + w3, w3 // 2, r)
        self.up2 = Up(w3 // 2 + w2, w2 // 2, r)
        self.up3 = Up(w2 // 2 + w1, up3_out, r)
        if not spec.folded:
            self.up4 = Up(w1 // 2 + w0, w0, r)
        self.outc = OutConv(w0, out_channels)
        self._fold_modules(spec)


@torch.no_grad()
def reparameterize(model: MobileOneModel) -> MobileOneModel:
    """A new eval-mode model in the inference form, computing what `model` computes in
    eval mode (each block's branches folded into one convolution)."""
    if model.reparameterized:
        return model
    fused = MobileOneModel(model.spec, reparameterized=True)
    trained = dict(model.named_modules())
    state = {}
    for name, module in fused.named_modules():
        if isinstance(module, MobileOneBlock):
            kernel, bias = trained[name].fused()  # type: ignore[union-attr]
            state[f"{name}.reparam_conv.weight"] = kernel
            state[f"{name}.reparam_conv.bias"] = bias
    own = model.state_dict()
    for key in fused.state_dict():
        if key not in state:
            state[key] = own[key]  # ConvBNAct and the output conv are not reparameterized
    fused.load_state_dict(state, strict=True)
    return fused.eval()
