"""Reader for Ultralight dataset folders.

    DIR/full_body_img/<i>.jpg   frames 0..N-1
    DIR/landmarks/<i>.lms       one `x y` pair per line, per frame
    DIR/aud_hu.npy              [N,2,1024] HuBERT features at 25 fps   (hubert mode)
    DIR/aud_wenet.npy           [N,16,512] wenet features at 20 fps    (wenet mode)
    DIR/aud.wav                 optional source audio

Opening a dataset checks its structure, every landmark file and the feature arrays up
front; each problem is reported with the first bad file. Images are decoded lazily, and
an unreadable one names its file when it is reached (`check(decode=True)` decodes all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from dhm.data.preprocess import CropBox, check_box, crop_box, parse_landmarks
from dhm.errors import DatasetError
from dhm.spec import AUDIO_MODES, PREPROCESS, AudioMode, PreprocessSpec

IMAGE_DIR = "full_body_img"
LANDMARK_DIR = "landmarks"
WAV_FILE = "aud.wav"
# HuBERT and wenet framing round differently at the ends of a clip, so real datasets
# often hold one or two more (or fewer) feature frames than images. Ultralight trains on
# the shorter of the two; larger gaps mean a wrong file.
COUNT_TOLERANCE = 2

_INDEXED = re.compile(r"^(\d+)\.(jpg|lms)$")


def _indices(folder: Path, ext: str) -> list[int]:
    out = []
    for p in folder.iterdir():
        m = _INDEXED.match(p.name)
        if m and m.group(2) == ext:
            out.append(int(m.group(1)))
    return sorted(out)


def _first_gap(indices: list[int]) -> int | None:
    for expected, got in enumerate(indices):
        if got != expected:
            return expected
    return None


@dataclass
class Dataset:
    root: Path
    n_frames: int  # usable frames: images, landmarks and features all present
    frame_hw: tuple[int, int]
    landmarks: np.ndarray  # int32 [n_frames, P, 2]
    features: dict[str, np.ndarray] = field(repr=False)  # mode name -> [n_frames, ...] float32
    spec: PreprocessSpec = PREPROCESS

    @property
    def modes(self) -> list[str]:
        return sorted(self.features)

    @property
    def wav_path(self) -> Path | None:
        p = self.root / WAV_FILE
        return p if p.is_file() else None

    def audio(self, mode: str | AudioMode) -> np.ndarray:
        name = mode.name if isinstance(mode, AudioMode) else mode
        if name not in self.features:
            raise DatasetError(
                f"{self.root}: has no {AUDIO_MODES[name].feature_file} for {name} mode "
                f"(found: {', '.join(AUDIO_MODES[m].feature_file for m in self.modes) or 'none'})"
            )
        return self.features[name]

    def image_path(self, i: int) -> Path:
        return self.root / IMAGE_DIR / f"{i}.jpg"

    def landmark_path(self, i: int) -> Path:
        return self.root / LANDMARK_DIR / f"{i}.lms"

    def frame(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_frames:
            raise IndexError(i)
        path = self.image_path(i)
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{path}: unreadable image")
        if img.shape[:2] != self.frame_hw:
            raise DatasetError(
                f"{path}: {img.shape[1]}x{img.shape[0]} differs from frame 0 ({self.frame_hw[1]}x{self.frame_hw[0]})"
            )
        return img

    def box(self, i: int) -> CropBox:
        return crop_box(self.landmarks[i], self.spec)

    @cached_property
    def boxes(self) -> list[CropBox]:
        return [self.box(i) for i in range(self.n_frames)]

    def check(self, decode: bool = True) -> None:
        """Decode every image (slow on long clips; open() already checked the rest)."""
        if decode:
            for i in range(self.n_frames):
                self.frame(i)


def read_features(path: str | Path, mode: AudioMode) -> np.ndarray:
    """A feature file of `mode` (.npy): readable, the right layout, finite; float32."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DatasetError(
            f"{path}: not a readable .npy array ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DatasetError(f"{path}: an .npz archive; features are one .npy array")
    if arr.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: holds {arr.dtype} values; features must be numbers (float32)")
    if not mode.fits(arr.shape):
        raise DatasetError(
            f"{path}: shape {list(arr.shape)} does not fit the {mode.name} mode; {mode.name} features must be "
            f"{mode.layout}"
        )
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1))[0][0])
        raise DatasetError(f"{path}: non-finite values at frame {bad}")
    if arr.shape[0] == 0:
        raise DatasetError(f"{path}: holds no feature frames")
    return arr.astype(np.float32, copy=False)


def _load_features(root: Path, mode: AudioMode) -> np.ndarray | None:
    path = root / mode.feature_file
    return read_features(path, mode) if path.exists() else None


def open_dataset(
    root: str | Path, mode: str | None = None, spec: PreprocessSpec = PREPROCESS, need_features: bool = True
) -> Dataset:
    """Open and check an Ultralight dataset folder. With `mode`, its features must exist;
    with need_features=False (rendering from separate features) none are required."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    img_dir, lms_dir = root / IMAGE_DIR, root / LANDMARK_DIR
    if not img_dir.is_dir():
        raise DatasetError(f"{root}: missing {IMAGE_DIR}/ (expected {IMAGE_DIR}/0.jpg, 1.jpg, …)")
    if not lms_dir.is_dir():
        raise DatasetError(f"{root}: missing {LANDMARK_DIR}/ (expected {LANDMARK_DIR}/0.lms, 1.lms, …)")

    images = _indices(img_dir, "jpg")
    if not images:
        raise DatasetError(f"{img_dir}: no frames (expected 0.jpg, 1.jpg, …)")
    gap = _first_gap(images)
    if gap is not None:
        raise DatasetError(
            f"{img_dir / f'{gap}.jpg'}: missing frame ({len(images)} frames found, numbering breaks here)"
        )
    n_images = len(images)
    for i in range(n_images):
        if not (lms_dir / f"{i}.lms").is_file():
            raise DatasetError(f"{lms_dir / f'{i}.lms'}: missing landmarks for frame {i}")
        if (img_dir / f"{i}.jpg").stat().st_size == 0:
            raise DatasetError(f"{img_dir / f'{i}.jpg'}: unreadable image (empty file)")

    features = {m.name: a for m in AUDIO_MODES.values() if (a := _load_features(root, m)) is not None}
    if mode is not None and mode not in features:
        raise DatasetError(f"{root}: missing {AUDIO_MODES[mode].feature_file} ({mode} features)")
    if not features and need_features:
        raise DatasetError(f"{root}: no audio features (expected aud_hu.npy or aud_wenet.npy)")

    n = n_images
    for name, arr in features.items():
        if abs(arr.shape[0] - n_images) > COUNT_TOLERANCE:
            raise DatasetError(
                f"{root / AUDIO_MODES[name].feature_file}: {arr.shape[0]} feature frames for {n_images} images "
                f"(mismatched counts; at most {COUNT_TOLERANCE} apart is accepted)"
            )
        n = min(n, arr.shape[0])

    first = cv2.imread(str(img_dir / "0.jpg"), cv2.IMREAD_COLOR)
    if first is None:
        raise DatasetError(f"{img_dir / '0.jpg'}: unreadable image")
    frame_hw = (int(first.shape[0]), int(first.shape[1]))

    lms_list = []
    for i in range(n):
        path = lms_dir / f"{i}.lms"
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: unreadable landmarks ({exc})") from None
        lms = parse_landmarks(text, str(path))
        if lms_list and lms.shape != lms_list[0].shape:
            raise DatasetError(f"{path}: {lms.shape[0]} points, frame 0 has {lms_list[0].shape[0]}")
        h, w = frame_hw
        outside = (lms[:, 0] < 0) | (lms[:, 0] >= w) | (lms[:, 1] < 0) | (lms[:, 1] >= h)
        if outside.any():
            k = int(np.argmax(outside))
            raise DatasetError(f"{path}: point {k} ({lms[k, 0]}, {lms[k, 1]}) lies outside the {w}x{h} frame")
        try:
            check_box(crop_box(lms, spec), frame_hw, str(path))
        except DatasetError as exc:
            raise DatasetError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
        lms_list.append(lms)

    return Dataset(
        root=root,
        n_frames=n,
        frame_hw=frame_hw,
        landmarks=np.stack(lms_list),
        features={k: v[:n] for k, v in features.items()},
        spec=spec,
    )
