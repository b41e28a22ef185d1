"""FeatherHuBERT (FeatherTalk's distilled HuBERT) as an audio model dhm can load, export and run.

The architecture, as FeatherTalk's `data_utils/feather_hubert/feather_hubert.py` defines it
(state-dict keys kept, so its checkpoints load): a HuBERT-style valid Conv1d front end
(kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2, channels 64,128,256,384,C,C,C, each
GroupNorm + GELU; one token per 320 samples, HuBERT's token count), `num_blocks` depthwise
TCN blocks (GroupNorm -> 1x1 expand -> depthwise k5 with dilations 1,2,4,8 and "same"
padding -> GELU -> 1x1 project, residual), GroupNorm, GELU, a 1x1 projection to 1024.
Upstream normalises the whole utterance to zero mean and unit variance first.

On a phone FeatherTalk calls it on [1, 720] windows: exactly one 25 fps frame's two tokens,
no context. In dhm's audio-model slot a call reads `context` tokens on each side too and
keeps the middle two (`FeatherWindow`), and the normalisation is the window's own (the
utterance's cannot stream): `dhm.distill.audio` measures what each choice costs against
the offline, whole-utterance features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dhm.audio.geometry import AudioModelSpec
from dhm.errors import CheckpointError, SpecError

KERNELS = (10, 3, 3, 3, 3, 2, 2)
STRIDES = (5, 2, 2, 2, 2, 2, 2)
TOKEN_HOP = 320
TOKEN_FIELD = 400  # samples of one token (the front end's receptive field)
DILATIONS = (1, 2, 4, 8)
NORM_EPS = 1e-7


# `dhm distill-audio --family featherhubert --size`: m is FeatherTalk's released 3.36 M
# configuration, l its code's default; s a small one for quick runs
FEATHER_SIZES = {
    "s": {"channels": 64, "num_blocks": 4},
    "m": {"channels": 256, "num_blocks": 8},
    "l": {"channels": 512, "num_blocks": 12},
}


@dataclass(frozen=True)
class FeatherConfig:
    channels: int = 256
    expansion: int = 2
    num_blocks: int = 8
    output_dim: int = 1024
    context: int = 0  # tokens read on each side of a frame's two, per call
    normalize: str = "window"  # "window": the call's own mean/var; "none": PCM as given

    def __post_init__(self) -> None:
        if not (8 <= self.channels <= 2048 and 1 <= self.expansion <= 8 and 0 <= self.num_blocks <= 64):
            raise SpecError("FeatherHuBERT: channels 8..2048, expansion 1..8, blocks 0..64")
        if self.output_dim != 1024:
            raise SpecError(f"FeatherHuBERT: output {self.output_dim} wide; hubert features are 1024 wide")
        if not 0 <= self.context <= 200 or self.normalize not in ("window", "none"):
            raise SpecError("FeatherHuBERT: context 0..200 tokens, normalize 'window' or 'none'")

    family = "featherhubert"  # not a field: the class says it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def audio_spec(self) -> AudioModelSpec:
        tokens = 2 + 2 * self.context
        return AudioModelSpec(
            frontend="featherhubert",
            mode="hubert",
            sample_rate=16000,
            window_samples=(tokens - 1) * TOKEN_HOP + TOKEN_FIELD,
            row_hop=TOKEN_HOP,
            pad_left=self.context * TOKEN_HOP,
            rows_per_call=2,
            row_size=1024,
            frame_count=2,
            frame_stride=2,
            frame_offset=0,
            tail_hop=TOKEN_HOP,
            hops_per_row=1,
        )


def _groups(channels: int) -> int:
    return next((g for g in (32, 16, 8, 4, 2) if channels % g == 0), 1)


def build_feather(config: FeatherConfig):
    """(encoder, windowed): the upstream-compatible encoder ([B,1,N] -> [B,tokens,1024],
    valid token count) and the slot's per-call model ([1,1,window] -> [1,2,1024])."""
    import torch
    from torch import nn

    C = config.channels

    class ConvNormAct(nn.Module):
        def __init__(self, cin: int, cout: int, k: int, s: int) -> None:
            super().__init__()
            self.conv = nn.Conv1d(cin, cout, k, stride=s, bias=False)
            self.norm = nn.GroupNorm(_groups(cout), cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.gelu(self.norm(self.conv(x)))

    class FrontEnd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = (64, 128, 256, 384, C, C, C)
            ins = (1, *widths[:-1])
            self.layers = nn.Sequential(
                *(ConvNormAct(i, o, k, s) for i, o, k, s in zip(ins, widths, KERNELS, STRIDES, strict=True))
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    class Block(nn.Module):
        def __init__(self, dilation: int) -> None:
            super().__init__()
            hidden = C * config.expansion
            self.norm = nn.GroupNorm(_groups(C), C)
            self.pw_expand = nn.Conv1d(C, hidden, 1, bias=False)
            self.dw_conv = nn.Conv1d(
                hidden, hidden, 5, padding=2 * dilation, dilation=dilation, groups=hidden, bias=False
            )
            self.pw_project = nn.Conv1d(hidden, C, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.pw_project(nn.functional.gelu(self.dw_conv(self.pw_expand(self.norm(x)))))
            return x + y

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = FrontEnd()
            self.encoder = nn.Sequential(*(Block(DILATIONS[i % len(DILATIONS)]) for i in range(config.num_blocks)))
            self.final_norm = nn.GroupNorm(_groups(C), C)
            self.proj = nn.Conv1d(C, config.output_dim, 1)

        def forward(self, pcm: torch.Tensor) -> torch.Tensor:
            x = self.encoder(self.frontend(pcm))
            return self.proj(nn.functional.gelu(self.final_norm(x))).transpose(1, 2)

    class Windowed(nn.Module):
        """One call of the audio-model slot: the window normalised on its own (or not),
        encoded, its middle two tokens kept."""

        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.net = encoder

        def forward(self, pcm: torch.Tensor) -> torch.Tensor:
            if config.normalize == "window":
                mean = pcm.mean(dim=-1, keepdim=True)
                var = ((pcm - mean) ** 2).mean(dim=-1, keepdim=True)
                pcm = (pcm - mean) / torch.sqrt(var + NORM_EPS)
            tokens = self.net(pcm)
            return tokens[:, config.context : config.context + 2]

    encoder = Encoder()
    return encoder, Windowed(encoder)


def _infer_config(state: dict[str, Any], mapping: dict[str, Any] | None) -> FeatherConfig:
    """Upstream's config mapping when saved, else read from the weights' shapes."""
    try:
        channels = int(state["proj.weight"].shape[1])
        output_dim = int(state["proj.weight"].shape[0])
        blocks = len({k.split(".")[1] for k in state if k.startswith("encoder.")})
        expansion = int(state["encoder.0.pw_expand.weight"].shape[0]) // channels if blocks else 2
    except (KeyError, IndexError, AttributeError):
        raise CheckpointError("not a FeatherHuBERT state dict (no proj / encoder weights)") from None
    mapping = mapping or {}
    for key, found in (("channels", channels), ("num_blocks", blocks), ("output_dim", output_dim)):
        if key in mapping and int(mapping[key]) != found:
            raise CheckpointError(f"its config says {key}={mapping[key]}, its weights {found}")
    return FeatherConfig(channels=channels, expansion=expansion, num_blocks=blocks, output_dim=output_dim)


def load_feather_checkpoint(path, context: int = 0, normalize: str = "window"):
    """A FeatherTalk checkpoint ({"model": state, "config"|"args": {...}} or a bare state
    dict), read with weights_only=True. Returns (config, encoder, windowed)."""
    import dataclasses

    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such FeatherHuBERT checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - unreadable or pickled code: one line
        raise CheckpointError(f"{path}: not a readable FeatherHuBERT checkpoint ({type(exc).__name__})") from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: not a FeatherHuBERT checkpoint")
    state = blob.get("model", blob)
    mapping = blob.get("config") or blob.get("args")
    if not isinstance(state, dict) or (mapping is not None and not isinstance(mapping, dict)):
        raise CheckpointError(f"{path}: not a FeatherHuBERT checkpoint")
    try:
        config = _infer_config(state, mapping)
        config = dataclasses.replace(config, context=context, normalize=normalize)
    except (CheckpointError, SpecError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    encoder, windowed = build_feather(config)
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: non-finite values in {name}")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit FeatherHuBERT ({str(exc).splitlines()[-1].strip()})"
        ) from None
    return config, encoder.eval(), windowed.eval()


# ----------------------------------------------------------------------------- offline vs streamed


def offline_features(encoder, pcm: np.ndarray) -> np.ndarray:
    """Upstream's `get_feather_hubert_from_16k_speech` + reshape: the utterance normalised,
    20 s pieces overlapped as for HuBERT, HuBERT's token count, an odd last token dropped
    (FeatherTalk drops it; Ultralight's 2026 HuBERT script pads it), [N, 2, 1024]."""
    import torch

    from dhm.audio.teacher import hubert_pieces, hubert_steps, normalize_utterance

    x = normalize_utterance(pcm)
    expected = hubert_steps(x.size)
    parts = [np.zeros((0, 1024), np.float32)]
    with torch.inference_mode():
        for a, b in hubert_pieces(x.size):
            parts.append(encoder(torch.from_numpy(x[a:b]).view(1, 1, -1))[0].numpy())
    tokens = np.concatenate(parts)
    if tokens.shape[0] < expected:
        tokens = np.concatenate([tokens, np.zeros((expected - tokens.shape[0], 1024), np.float32)])
    tokens = tokens[: expected - expected % 2]
    return tokens.reshape(-1, 2, 1024).astype(np.float32)


def stream_parity(encoder, config: FeatherConfig, pcm, contexts=(0, 2, 8), norms=("window", "none")) -> list[dict]:
    """What streaming costs: per (context, normalisation), the slot's per-frame features
    against the offline ones, with the compute and latency each choice implies."""
    import dataclasses

    import torch

    from dhm.audio.geometry import windowed_features
    from dhm.metrics import count_macs, feature_agreement

    offline = offline_features(encoder, pcm)
    rows = []
    for norm in norms:
        for ctx in contexts:
            cfg = dataclasses.replace(config, context=ctx, normalize=norm)
            _, windowed = build_feather(cfg)
            windowed.net = encoder
            spec = cfg.audio_spec()
            got = windowed_features(windowed, spec, pcm, offline.shape[0])
            macs = count_macs(windowed, torch.zeros(1, 1, spec.window_samples))
            rows.append(
                {
                    "context": ctx,
                    "normalize": norm,
                    **feature_agreement(got, offline),
                    "gmacs_per_second": round(macs * 25 / 1e9, 3),
                    "lookahead_ms_w8": round(spec.lookahead_ms(8), 1),
                }
            )
    return rows
