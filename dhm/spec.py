"""The single definition of the generator spec, the upstream revisions and the
preprocessing constants.

Every stage (data, train, distill, export, runtime, bench) and the manifest read these
values from here; the native code reads them from the manifest. Nothing else in the
project may hard-code a crop size, a mask rectangle, an audio window or a crop filter.

Upstream (Ultralight-Digital-Human, then FeatherTalk) changed its checkpoint layout, its
audio window and its crop filter several times; users hold models from every revision.
`REVISIONS` records each revision as upstream's git history shows it, and a
`GeneratorSpec` names the revision whose conventions its model follows, so a model is
read and fed exactly as it was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dhm.errors import SpecError

# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioMode:
    """One audio-feature family the generator can be conditioned on.

    The network's audio input is the window of W per-frame features reshaped to
    [channels_per_frame * W, *plane]: hubert [2W, 32, 32] (from [W, 2, 1024]), wenet
    [16W, 16, 32] (from [W, 16, 512]). Its channel count therefore tells the window.
    """

    name: str
    feature_file: str  # file name inside the dataset folder
    per_frame_shape: tuple[int, ...]  # one video frame's slice of the feature array
    fps: int  # video frames per second that the features are aligned to
    channels_per_frame: int  # network input channels one feature frame fills
    plane: tuple[int, int]  # the network input's spatial shape

    def input_shape(self, window: int) -> tuple[int, int, int]:
        return (self.channels_per_frame * window, *self.plane)

    def window_of(self, channels: int) -> int | None:
        """The window an audio branch with `channels` input channels was built for."""
        if channels % self.channels_per_frame:
            return None
        return channels // self.channels_per_frame

    @property
    def layout(self) -> str:
        return "[N," + ",".join(map(str, self.per_frame_shape)) + "]"

    def fits(self, shape: tuple[int, ...]) -> bool:
        """Whether an array of `shape` holds per-frame features of this mode."""
        return len(shape) == 1 + len(self.per_frame_shape) and tuple(shape[1:]) == self.per_frame_shape


AUDIO_MODES: dict[str, AudioMode] = {
    # HuBERT runs at 50 Hz: two hidden states of 1024 per 25 fps video frame.
    "hubert": AudioMode("hubert", "aud_hu.npy", (2, 1024), 25, 2, (32, 32)),
    # The streaming wenet encoder gives 16 vectors of 512 per 20 fps video frame.
    "wenet": AudioMode("wenet", "aud_wenet.npy", (16, 512), 20, 16, (16, 32)),
}


def audio_mode(name: str) -> AudioMode:
    try:
        return AUDIO_MODES[name]
    except KeyError:
        raise SpecError(f"unknown audio mode {name!r}; expected one of {sorted(AUDIO_MODES)}") from None


# The audio windows upstream models use: frames i-W/2 … i+W/2-1, zero-padded past either end.
WINDOWS = (8, 16)
# The widest window's half: the held-out split's guard is this wide whatever the model,
# so that one dataset splits the same way for every model read from it.
MAX_HALF_WINDOW = max(WINDOWS) // 2


def window_bounds(window: int) -> tuple[int, int]:
    """(before, after) of a window of `window` frames: frames i-before … i+after-1."""
    if window not in WINDOWS:
        raise SpecError(f"audio window {window}: upstream models use {' or '.join(map(str, WINDOWS))} frames")
    return window // 2, window - window // 2


def describe_window(window: int) -> str:
    before, after = window_bounds(window)
    return f"{window}-frame window (i-{before} … i+{after - 1})"


# ----------------------------------------------------------------------- preprocessing

INTERPOLATIONS = ("linear", "area")
INTERPOLATION_NAMES = {"linear": "bilinear (INTER_LINEAR)", "area": "INTER_AREA"}


@dataclass(frozen=True)
class PreprocessSpec:
    """Crop, mask and scaling conventions of an Ultralight-style avatar generator.

    `crop_interpolation` is a per-model fact (see `Revision.crop_interpolation`): build
    one with `GeneratorSpec.preprocess` or `dataclasses.replace`, never assume it.
    """

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
    crop_interpolation: str = "linear"
    # Every revision pastes back with a default (bilinear) cv2.resize.
    paste_interpolation: str = "linear"
    color_order: str = "BGR"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0  # applied as x / 255 on float32

    def __post_init__(self) -> None:
        for what in ("crop_interpolation", "paste_interpolation"):
            if getattr(self, what) not in INTERPOLATIONS:
                raise SpecError(f"{what} {getattr(self, what)!r}: expected one of {', '.join(INTERPOLATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PREPROCESS = PreprocessSpec()

# Held-out frames a model is judged on by default (train/distill evaluation, the bench's
# parity), evenly spaced over the evaluation blocks (all of them when there are fewer). 64,
# not 16: on the built-in data a student scored 28.61 dB in the lip box on 16 frames and
# 29.92 dB on all 50, because a few half-open mouths weigh three times too much in 16; train
# and distill also choose their best step on these frames.
JUDGE_FRAMES = 64

# The mouth region used for mouth-PSNR: the masked rectangle, in inner-crop pixels,
# as (y0, y1, x0, x1) slice bounds: exactly the pixels the mask blacks out.
MOUTH_SLICE = (
    PREPROCESS.mask_rect[1],
    PREPROCESS.mask_rect[1] + PREPROCESS.mask_rect[3],
    PREPROCESS.mask_rect[0],
    PREPROCESS.mask_rect[0] + PREPROCESS.mask_rect[2],
)

# --------------------------------------------------------------------------- revisions


@dataclass(frozen=True)
class Revision:
    """One revision of upstream's `unet.py` and the data conventions trained with it.

    Read from upstream's git history (unet.py, datasetsss.py, inference.py, face_utils.py).
    """

    id: str  # the upstream date the revision began
    period: str
    commits: str  # upstream commits that made unet.py take this form
    # `inc.inconv.0.*` / `downN.maxpool_conv.0.*`: an nn.Sequential around one block.
    wrapped: bool
    windows: dict[str, int] = field(hash=False, compare=False)  # audio window per mode
    # wenet branch: "narrow" conv1 -> w2 and conv3 w2 -> w3; "wide" conv1 -> w3 and conv3 w3 -> w3.
    wenet_branch: str = "wide"
    wenet_conv1_residual: bool = False  # upstream's flag (honoured only where the shapes allow it)
    # What cv2.resize really did. Before 2026-05-23 upstream called
    # cv2.resize(crop, (168, 168), cv2.INTER_AREA): the third positional argument is `dst`,
    # so those models were trained and run on INTER_LINEAR crops.
    crop_interpolation: str = "linear"
    # Training: the reference frame cropped with the target frame's box, or with its own.
    reference_crop: str = "own"
    # Modes its training code could train (2025-06-04 reshaped an 8-frame hubert window
    # into the 16-frame input and failed): detection prefers these for a mode.
    trained_modes: tuple[str, ...] = ("hubert", "wenet")
    note: str = ""

    @property
    def label(self) -> str:
        return f"ultralight {self.id} layout"


REVISIONS: dict[str, Revision] = {
    r.id: r
    for r in (
        Revision(
            "2024-10-10",
            "2024-10-10 … 2024-10-14",
            "3f9852e",
            True,
            {"hubert": 8, "wenet": 8},
            wenet_branch="narrow",
            wenet_conv1_residual=True,
            reference_crop="target",
            note="first commit",
        ),
        Revision(
            "2024-10-14",
            "2024-10-14 … 2025-06-04",
            "c34b99d",
            True,
            {"hubert": 16, "wenet": 16},
            wenet_branch="wide",
            wenet_conv1_residual=True,
            note="16-frame windows; training crops the reference with its own box from aff08d2 (2024-11-04)",
        ),
        Revision(
            "2025-06-04",
            "2025-06-04 … 2025-06-15",
            "5f60a28",
            True,
            {"hubert": 16, "wenet": 8},
            trained_modes=("wenet",),
            note="wenet back to 8 frames; hubert's unet still took 16",
        ),
        Revision("2025-06-15", "2025-06-15 … 2026-05-23", "a085473", True, {"hubert": 8, "wenet": 8}),
        Revision(
            "2026-05-23",
            "2026-05-23 → today",
            "b2dd34a",
            False,
            {"hubert": 8, "wenet": 8},
            crop_interpolation="area",
            note="face_utils refactor: unwrapped modules, real INTER_AREA crops",
        ),
    )
}
LATEST_REVISION = "2026-05-23"

# --------------------------------------------------------------------------- generator

FACE_INPUT = "face"
AUDIO_INPUT = "audio"
OUTPUT = "out"
FACE_CHANNELS = 6  # reference BGR + masked BGR

WIDTH_PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "full": (32, 64, 128, 256, 512),
    "mobile": (16, 32, 64, 128, 256),
}

# ultralight: InvertedResidual blocks (every Ultralight revision, FeatherTalk's unet.py).
# mobileone: FeatherTalk's unet_mobileone.py: the same U-Net with separable MobileOne blocks,
# trained multi-branch and reparameterized into single convolutions for inference.
ARCHS = ("ultralight", "mobileone")
ARCH_NAMES = {"ultralight": "Ultralight U-Net", "mobileone": "FeatherTalk MobileOne U-Net"}
# FeatherTalk (2026-07) uses the 2026-05-23 conventions: 8-frame windows, INTER_AREA crops.
MOBILEONE_REVISION = "2026-05-23"

# The U-Net's first level. full: at the crop's resolution (every upstream model). s2d
# (space-to-depth, students only): the 160x160 level folded into channels, the 6-channel
# face read as 24 channels at 80x80 and the output painted as 12 channels at 80x80 then
# unfolded (PixelUnshuffle / PixelShuffle). The full level's few-channel blocks are memory
# bound on a phone's CPU and barely shrink with the widths (docs/measurements.md).
STEMS = ("full", "s2d")
STEM_NAMES = {"full": "full-resolution first level", "s2d": "space-to-depth stem (first level at 80x80)"}
FOLD = 2  # the s2d stem's factor: 2x2 pixels per position


def stem_tag(stem: str | None) -> str:
    """' s2d' after a name for a folded stem; nothing for upstream's full one."""
    return "" if stem in (None, "full") else f" {stem}"


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
    if any(v > 4096 for v in values):
        raise SpecError(f"widths {values}: every width must be at most 4096")
    return values  # type: ignore[return-value]


def revision(revision_id: str) -> Revision:
    try:
        return REVISIONS[revision_id]
    except KeyError:
        raise SpecError(f"unknown upstream revision {revision_id!r}; expected one of {', '.join(REVISIONS)}") from None


@dataclass(frozen=True)
class Conventions:
    """What a model expects of its inputs: preprocessing, audio mode and window.

    Built from a `GeneratorSpec` (checkpoints) or from a manifest (exported files); the
    data pipeline, the runtime and the golden vectors all take one of these.
    """

    preprocess: PreprocessSpec
    mode: AudioMode
    window: int

    def __post_init__(self) -> None:
        window_bounds(self.window)

    @property
    def window_before(self) -> int:
        return window_bounds(self.window)[0]

    @property
    def window_after(self) -> int:
        return window_bounds(self.window)[1]

    @property
    def audio_shape(self) -> tuple[int, int, int]:
        return self.mode.input_shape(self.window)

    @property
    def lookahead(self) -> int:
        """Feature frames past frame i that its window reads."""
        return self.window_after - 1

    def describe(self) -> str:
        return (
            f"{self.mode.name}, {describe_window(self.window)}, "
            f"{INTERPOLATION_NAMES[self.preprocess.crop_interpolation]} crops"
        )


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator is: family, audio mode, widths, and the upstream revision whose
    layout and conventions it follows (window and crop filter default to the revision's)."""

    arch: str = "ultralight"
    mode: str = "hubert"
    widths: tuple[int, int, int, int, int] = WIDTH_PRESETS["full"]
    revision: str = LATEST_REVISION
    crop_interpolation: str | None = None  # None: the revision's
    image_size: int = PREPROCESS.inner_size
    face_channels: int = FACE_CHANNELS
    stem: str = "full"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SpecError(f"unknown architecture {self.arch!r}; expected one of {list(ARCHS)}")
        if self.stem not in STEMS:
            raise SpecError(f"unknown stem {self.stem!r}; expected one of {list(STEMS)}")
        audio_mode(self.mode)
        rev = revision(self.revision)
        if self.arch == "mobileone" and self.revision != MOBILEONE_REVISION:
            raise SpecError(f"the MobileOne family follows the {MOBILEONE_REVISION} conventions, not {self.revision}")
        object.__setattr__(
            self, "widths", parse_widths(self.widths if isinstance(self.widths, str) else tuple(self.widths))
        )
        crop = self.crop_interpolation or rev.crop_interpolation
        if crop not in INTERPOLATIONS:
            raise SpecError(f"crop interpolation {crop!r}: expected one of {', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "crop_interpolation", crop)

    # -------------------------------------------------------------- derived facts

    @property
    def rev(self) -> Revision:
        return REVISIONS[self.revision]

    @property
    def audio(self) -> AudioMode:
        return audio_mode(self.mode)

    @property
    def window(self) -> int:
        return self.rev.windows[self.mode]

    @property
    def preprocess(self) -> PreprocessSpec:
        return replace(PREPROCESS, crop_interpolation=self.crop_interpolation)

    @property
    def conventions(self) -> Conventions:
        return Conventions(self.preprocess, self.audio, self.window)

    @property
    def reference_crop(self) -> str:
        return self.rev.reference_crop

    @property
    def preset(self) -> str | None:
        for name, widths in WIDTH_PRESETS.items():
            if widths == self.widths:
                return name
        return None

    def with_widths(self, widths: tuple[int, ...]) -> "GeneratorSpec":
        """Same family and conventions, other widths (a distillation student)."""
        return replace(self, widths=tuple(widths))

    def input_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        s = self.image_size
        return {
            FACE_INPUT: (batch, self.face_channels, s, s),
            AUDIO_INPUT: (batch, *self.audio.input_shape(self.window)),
        }

    def output_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        return {OUTPUT: (batch, 3, self.image_size, self.image_size)}

    @property
    def folded(self) -> bool:
        """Whether the first level is folded into channels (the s2d stem)."""
        return self.stem == "s2d"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arch": self.arch,
            "mode": self.mode,
            "widths": list(self.widths),
            "revision": self.revision,
            "window": self.window,
            "crop_interpolation": self.crop_interpolation,
        }
        if self.folded:  # written only when set, so every upstream-shaped spec reads as before
            out["stem"] = self.stem
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GeneratorSpec":
        """Read a spec written by `to_dict`. Specs written before revisions were recorded
        (dhm checkpoints and manifests of format 1) name no revision: those models have
        the wrapped layout, the 8-frame window, the narrow wenet branch and bilinear crops."""
        try:
            arch, mode, widths = str(data["arch"]), str(data["mode"]), tuple(data["widths"])
        except KeyError as exc:
            raise SpecError(f"generator spec is missing {exc.args[0]!r}") from None
        except TypeError:
            raise SpecError("generator spec: widths must be a list of five integers") from None
        rev = data.get("revision") or ("2024-10-10" if mode == "wenet" else "2025-06-15")
        crop = data.get("crop_interpolation") or ("linear" if "revision" not in data else None)
        stem = str(data.get("stem") or "full")
        spec = cls(arch=arch, mode=mode, widths=widths, revision=str(rev), crop_interpolation=crop, stem=stem)
        if "window" in data and data["window"] != spec.window:
            raise SpecError(
                f"generator spec: window {data['window']!r} contradicts revision {spec.revision} "
                f"({spec.window} frames for {mode})"
            )
        return spec

    def describe(self) -> str:
        widths = ",".join(str(w) for w in self.widths)
        preset = f" ({self.preset})" if self.preset else ""
        return f"{self.arch}{stem_tag(self.stem)}/{self.mode} widths {widths}{preset}"

    def describe_conventions(self) -> str:
        """e.g. 'ultralight 2026-05-23 layout, hubert, 8-frame window (i-4 … i+3), INTER_AREA crops'."""
        head = "FeatherTalk MobileOne U-Net" if self.arch == "mobileone" else self.rev.label
        return f"{head}, {self.conventions.describe()}"


__all__ = [
    "AUDIO_INPUT",
    "AUDIO_MODES",
    "ARCHS",
    "AudioMode",
    "Conventions",
    "FACE_INPUT",
    "GeneratorSpec",
    "INTERPOLATIONS",
    "JUDGE_FRAMES",
    "LATEST_REVISION",
    "MAX_HALF_WINDOW",
    "MOUTH_SLICE",
    "OUTPUT",
    "PREPROCESS",
    "PreprocessSpec",
    "REVISIONS",
    "Revision",
    "STEMS",
    "WIDTH_PRESETS",
    "WINDOWS",
    "audio_mode",
    "describe_window",
    "parse_widths",
    "revision",
    "stem_tag",
    "window_bounds",
]
