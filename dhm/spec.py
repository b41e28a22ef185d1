"""The single definition of the generator spec and the preprocessing constants.

Every stage (data, train, distill, export, runtime, bench) and the manifest read these
values from here; the native code reads them from the manifest. Nothing else in the
project may hard-code a crop size, a mask rectangle or an audio window.

The values follow Ultralight-Digital-Human's training and inference code, because they
must match what the users' trained models saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dhm.errors import SpecError

# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioMode:
    """One audio-feature family the generator can be conditioned on."""

    name: str
    feature_file: str  # file name inside the dataset folder
    per_frame_shape: tuple[int, ...]  # one video frame's slice of the feature array
    fps: int  # video frames per second that the features are aligned to
    input_shape: tuple[int, int, int]  # the network's audio input, without batch

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def layout(self) -> str:
        return "[N," + ",".join(map(str, self.per_frame_shape)) + "]"

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether an array of `shape` holds per-frame features of this mode."""
        return len(shape) == 1 + len(self.per_frame_shape) and tuple(shape[1:]) == self.per_frame_shape


AUDIO_MODES: dict[str, AudioMode] = {
    # HuBERT runs at 50 Hz: two hidden states of 1024 per 25 fps video frame.
    "hubert": AudioMode("hubert", "aud_hu.npy", (2, 1024), 25, (16, 32, 32)),
    # The streaming wenet encoder gives 16 vectors of 512 per 20 fps video frame.
    "wenet": AudioMode("wenet", "aud_wenet.npy", (16, 512), 20, (128, 16, 32)),
}


def audio_mode(name: str) -> AudioMode:
    try:
        return AUDIO_MODES[name]
    except KeyError:
        raise SpecError(f"unknown audio mode {name!r}; expected one of {sorted(AUDIO_MODES)}") from None


# The audio window of frame i is frames i-4 … i+3, zero-padded past either end.
AUDIO_WINDOW_BEFORE = 4
AUDIO_WINDOW_AFTER = 4  # exclusive: i+3 is the last frame used
AUDIO_WINDOW = AUDIO_WINDOW_BEFORE + AUDIO_WINDOW_AFTER

# ----------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class PreprocessSpec:
    """Crop, mask and scaling conventions of an Ultralight-style avatar generator."""

    # Crop box from landmarks: x from point `lm_left` to `lm_right`, top at `lm_top`'s y,
    # and a square box whose side is its width.
    lm_left: int = 1
    lm_right: int = 31
    lm_top: int = 52
    crop_size: int = 168
    inner_size: int = 160
    border: int = 4  # inner = crop[border:border+inner, border:border+inner]
    # cv2.rectangle(img, (x, y, w, h), 0, -1) fills columns x..x+w-1 and rows y..y+h-1.
    mask_rect: tuple[int, int, int, int] = (5, 5, 150, 145)
    # Ultralight calls cv2.resize(crop, (168, 168), cv2.INTER_AREA): the third positional
    # argument of cv2.resize is `dst`, not `interpolation`, so its models were trained and
    # run on INTER_LINEAR crops. We follow what the models saw, not what the code meant.
    crop_interpolation: str = "linear"
    paste_interpolation: str = "linear"
    color_order: str = "BGR"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0  # applied as x / 255 on float32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PREPROCESS = PreprocessSpec()

# The mouth region used for mouth-PSNR: the masked rectangle, in inner-crop pixels,
# as (y0, y1, x0, x1) slice bounds: exactly the pixels the mask blacks out.
MOUTH_SLICE = (
    PREPROCESS.mask_rect[1],
    PREPROCESS.mask_rect[1] + PREPROCESS.mask_rect[3],
    PREPROCESS.mask_rect[0],
    PREPROCESS.mask_rect[0] + PREPROCESS.mask_rect[2],
)

# ------------------------------------------------------------------------- generator

FACE_INPUT = "face"
AUDIO_INPUT = "audio"
OUTPUT = "out"
FACE_CHANNELS = 6  # reference BGR + masked BGR

WIDTH_PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "full": (32, 64, 128, 256, 512),
    "mobile": (16, 32, 64, 128, 256),
}

ARCHS = ("ultralight",)


def parse_widths(text: str | tuple[int, ...] | list[int]) -> tuple[int, int, int, int, int]:
    """Parse a preset name or `w0,w1,w2,w3,w4` into five positive widths."""
    if isinstance(text, str):
        if text in WIDTH_PRESETS:
            return WIDTH_PRESETS[text]
        try:
            values = tuple(int(v) for v in text.replace(" ", "").split(","))
        except ValueError:
            raise SpecError(
                f"widths {text!r}: expected a preset ({', '.join(WIDTH_PRESETS)}) or five integers w0,w1,w2,w3,w4"
            ) from None
    else:
        values = tuple(int(v) for v in text)
    if len(values) != 5:
        raise SpecError(f"widths {values}: expected exactly five channel widths, got {len(values)}")
    if any(v < 2 for v in values):
        raise SpecError(f"widths {values}: every width must be at least 2")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator is: its family, audio mode and channel widths."""

    arch: str = "ultralight"
    mode: str = "hubert"
    widths: tuple[int, int, int, int, int] = WIDTH_PRESETS["full"]
    image_size: int = PREPROCESS.inner_size
    face_channels: int = FACE_CHANNELS

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SpecError(f"unknown architecture {self.arch!r}; expected one of {list(ARCHS)}")
        audio_mode(self.mode)
        object.__setattr__(self, "widths", parse_widths(self.widths if isinstance(self.widths, str) else tuple(self.widths)))

    @property
    def audio(self) -> AudioMode:
        return audio_mode(self.mode)

    @property
    def preset(self) -> str | None:
        for name, widths in WIDTH_PRESETS.items():
            if widths == self.widths:
                return name
        return None

    def input_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        s = self.image_size
        return {
            FACE_INPUT: (batch, self.face_channels, s, s),
            AUDIO_INPUT: (batch, *self.audio.input_shape),
        }

    def output_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        return {OUTPUT: (batch, 3, self.image_size, self.image_size)}

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "mode": self.mode, "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorSpec":
        try:
            return cls(arch=str(data["arch"]), mode=str(data["mode"]), widths=tuple(data["widths"]))
        except KeyError as exc:
            raise SpecError(f"generator spec is missing {exc.args[0]!r}") from None

    def describe(self) -> str:
        widths = ",".join(str(w) for w in self.widths)
        preset = f" ({self.preset})" if self.preset else ""
        return f"{self.arch}/{self.mode} widths {widths}{preset}"


__all__ = [
    "AUDIO_INPUT",
    "AUDIO_MODES",
    "AUDIO_WINDOW",
    "AUDIO_WINDOW_AFTER",
    "AUDIO_WINDOW_BEFORE",
    "AudioMode",
    "FACE_INPUT",
    "GeneratorSpec",
    "MOUTH_SLICE",
    "OUTPUT",
    "PREPROCESS",
    "PreprocessSpec",
    "WIDTH_PRESETS",
    "audio_mode",
    "parse_widths",
]
