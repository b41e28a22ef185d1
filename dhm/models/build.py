"""Building a generator from its spec, and the forms it is trained, frozen and shipped in."""

from __future__ import annotations

import torch

from dhm.models.ultralight import Model
from dhm.spec import GeneratorSpec


def build_model(spec: GeneratorSpec, reparameterized: bool = False) -> torch.nn.Module:
    """The generator `spec` describes; MobileOne models in their trained (multi-branch)
    form unless `reparameterized`."""
    if spec.arch == "mobileone":
        from dhm.models.mobileone import MobileOneModel

        return MobileOneModel(spec, reparameterized=reparameterized)
    return Model(spec)


def count_trained_params(spec: GeneratorSpec) -> int:
    """Parameters of the trained form (MobileOne: every branch; others: the same model)."""
    return sum(p.numel() for p in build_model(spec).parameters())


def inference_model(model: torch.nn.Module) -> torch.nn.Module:
    """The form that is exported and run: MobileOne reparameterized, others unchanged."""
    from dhm.models.mobileone import MobileOneModel, reparameterize

    return reparameterize(model) if isinstance(model, MobileOneModel) else model


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy whose Conv2d -> BatchNorm2d pairs (inside one nn.Sequential) are one
    convolution: a frozen teacher computes the same outputs (to float rounding) with fewer passes
    over its activations (the demo's teacher 1.26x faster in channels-last; docs/measurements.md)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = torch.nn.Identity()
    return folded
