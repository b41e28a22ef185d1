"""Teacher audio features exactly as Ultralight computes them, from weights on this disk.

    HuBERT  (`data_utils/hubert.py`): the whole utterance normalised to zero mean and unit
            variance (Wav2Vec2FeatureExtractor, do_normalize), fed in 20 s pieces that overlap
            by the conv front end's receptive field (kernel 400, stride 320), last hidden
            state; (n - 80) // 320 steps at 50 Hz, an odd count zero-padded to even, saved
            [N, 2, 1024] at 25 fps.
    wenet   (`data_utils/wenet_infer.py`): PCM scaled to int16 as Ultralight does
            (float * 32767, truncated), 320 ms of zeros before and 350 ms after, 80-bin Kaldi
            fbank (25 ms / 10 ms, povey window, no dither), windows of 67 fbank frames moved
            5 frames (20 fps) through the streaming conformer encoder with zero caches and
            offset 100; the encoder's 16 outputs of 512 per window, saved [N, 16, 512].

Nothing here reaches a network: HuBERT loads from a local folder (`local_files_only`), the
wenet encoder from a local ONNX file. `transformers` and `kaldi-native-fbank` come with the
`dhm[audio]` extra and are imported only when features are computed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhm.audio.frontend import SAMPLE_RATE
from dhm.errors import AudioTeacherError

# HuBERT's conv front end is one Conv1d of kernel 400, stride 320 in effect (Ultralight's words).
HUBERT_KERNEL = 400
HUBERT_STRIDE = 320
HUBERT_PIECE_STEPS = 1000  # 20 s pieces (320 * 1000 samples)
HUBERT_WIDTH = 1024
NORMALIZE_EPS = 1e-7  # Wav2Vec2FeatureExtractor's zero_mean_unit_var_norm

# Ultralight's wenet framing (`wenet_infer.py`)
WENET_PAD_BEFORE = 32 * 160  # 320 ms
WENET_PAD_AFTER = 35 * 160  # 350 ms
WENET_WINDOW = 67  # fbank frames per encoder call (-> 16 outputs after 4x subsampling)
WENET_STEP = 5  # fbank frames between calls: 50 ms, one 20 fps frame
WENET_OFFSET = 100
WENET_INPUTS = ("chunk", "offset", "att_cache", "cnn_cache")
WENET_ATT_CACHE = (3, 8, 16, 128)  # Ultralight's 3-layer unified conformer
WENET_CNN_CACHE = (3, 1, 512, 14)
WENET_OUT = (16, 512)
FBANK_BINS = 80
FBANK_FRAME = 400  # 25 ms
FBANK_SHIFT = 160  # 10 ms


def _extra_missing(package: str) -> AudioTeacherError:
    return AudioTeacherError(
        f"{package} is not installed; teacher features need the audio extra: pip install 'dhm[audio]'"
    )


# ----------------------------------------------------------------------------- framing


def hubert_steps(n_samples: int) -> int:
    """HuBERT's 50 Hz steps for an utterance, as Ultralight counts them (expected_T)."""
    return max(0, (n_samples - (HUBERT_KERNEL - HUBERT_STRIDE)) // HUBERT_STRIDE)


def hubert_pieces(n_samples: int, piece_steps: int = HUBERT_PIECE_STEPS) -> list[tuple[int, int]]:
    """The sample ranges Ultralight runs HuBERT on: full pieces of `piece_steps` steps,
    each extended by kernel - stride samples so that its steps are exactly those of the
    whole utterance's conv front end, then the rest when it holds one kernel."""
    clip = HUBERT_STRIDE * piece_steps
    pieces = [
        (clip * i, min(n_samples, clip * i + clip - HUBERT_STRIDE + HUBERT_KERNEL)) for i in range(n_samples // clip)
    ]
    rest = clip * len(pieces)
    if n_samples - rest >= HUBERT_KERNEL:
        pieces.append((rest, n_samples))
    return pieces


def fbank_frames(n_samples: int) -> int:
    """Kaldi fbank frames (snip_edges) of `n_samples`."""
    return 0 if n_samples < FBANK_FRAME else 1 + (n_samples - FBANK_FRAME) // FBANK_SHIFT


def wenet_windows(n_fbank: int) -> list[int]:
    """First fbank frame of each encoder call: Ultralight's `while end < feat_length` loop
    (a window runs when the previous one ended before the last fbank frame)."""
    starts, start, end = [], 0, 0
    while end < n_fbank:
        end = start + WENET_WINDOW
        starts.append(start)
        start += WENET_STEP
    return starts


def normalize_utterance(pcm: np.ndarray) -> np.ndarray:
    """Wav2Vec2FeatureExtractor's do_normalize: zero mean, unit variance over the utterance."""
    x = np.asarray(pcm, dtype=np.float32)
    return ((x - x.mean()) / np.sqrt(x.var() + NORMALIZE_EPS)).astype(np.float32)


def pcm_as_ultralight_int16(pcm: np.ndarray) -> np.ndarray:
    """`(sf.read(...) * 32767).astype(np.int16)`, as float32 (what fbank is given)."""
    return (np.asarray(pcm, dtype=np.float64) * 32767).astype(np.int16).astype(np.float32)


# ----------------------------------------------------------------------------- HuBERT


@dataclass
class HubertTeacher:
    """A local transformers HubertModel folder (e.g. the user's hubert-large-ls960-ft)."""

    folder: Path
    piece_steps: int = HUBERT_PIECE_STEPS

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        config_path = self.folder / "config.json"
        if not self.folder.is_dir():
            raise AudioTeacherError(f"{self.folder}: no such HuBERT folder")
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError):
            raise AudioTeacherError(
                f"{self.folder}: not a transformers model folder (no readable config.json)"
            ) from None
        if config.get("model_type") != "hubert":
            raise AudioTeacherError(
                f"{self.folder}: a {config.get('model_type') or 'unknown'} model, not a HubertModel "
                "(Ultralight's hubert features come from hubert-large-ls960-ft)"
            )
        if config.get("hidden_size") != HUBERT_WIDTH:
            raise AudioTeacherError(
                f"{self.folder}: hidden size {config.get('hidden_size')}; Ultralight's hubert features are "
                f"{HUBERT_WIDTH} wide (hubert-large)"
            )
        self.normalize = True
        pre = self.folder / "preprocessor_config.json"
        if pre.is_file():
            try:
                self.normalize = bool(json.loads(pre.read_text()).get("do_normalize", True))
            except ValueError:
                raise AudioTeacherError(f"{pre}: not readable JSON") from None
        import logging

        # transformers imports torchao (neural-compressor's dependency) when present, whose
        # CUDA-only extensions and pytree registrations log warnings that mean nothing here
        for name in ("torchao", "torch.utils._pytree"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            import transformers
            from transformers import HubertModel
        except ImportError:
            raise _extra_missing("transformers") from None
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        try:
            self.model = HubertModel.from_pretrained(str(self.folder), local_files_only=True).eval()
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad folder, said in one line
            raise AudioTeacherError(
                f"{self.folder}: HubertModel could not load it ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from None

    def steps(self, pcm: np.ndarray) -> np.ndarray:
        """[hubert_steps(n), 1024]: Ultralight's get_hubert_from_16k_speech."""
        import torch

        x = normalize_utterance(pcm) if self.normalize else np.asarray(pcm, dtype=np.float32)
        expected = hubert_steps(x.size)
        parts = []
        with torch.inference_mode():
            for start, end in hubert_pieces(x.size, self.piece_steps):
                hidden = self.model(torch.from_numpy(x[start:end])[None]).last_hidden_state[0]
                parts.append(hidden.float().numpy())
        out = np.concatenate(parts) if parts else np.zeros((0, HUBERT_WIDTH), np.float32)
        if abs(out.shape[0] - expected) > 1:  # Ultralight asserts this
            raise AudioTeacherError(f"HuBERT gave {out.shape[0]} steps where {expected} were expected")
        if out.shape[0] < expected:
            out = np.concatenate([out, np.zeros((expected - out.shape[0], HUBERT_WIDTH), np.float32)])
        return out[:expected]

    def features(self, pcm: np.ndarray) -> np.ndarray:
        """[N, 2, 1024]: steps, an odd count zero-padded to even (the 2026 make_even_first_dim)."""
        steps = self.steps(pcm)
        if steps.shape[0] % 2:
            steps = np.concatenate([steps, np.zeros((1, HUBERT_WIDTH), np.float32)])
        return steps.reshape(-1, 2, HUBERT_WIDTH).astype(np.float32)


# ----------------------------------------------------------------------------- wenet


def kaldi_fbank(samples_int16: np.ndarray) -> np.ndarray:
    """80-bin Kaldi fbank (25 ms / 10 ms, povey, no dither, snip_edges), as torchaudio's
    `kaldi.fbank` computes it in Ultralight's Feature_Pipeline: [frames, 80]."""
    try:
        import kaldi_native_fbank as knf
    except ImportError:
        raise _extra_missing("kaldi-native-fbank") from None
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.frame_length_ms = 1000 * FBANK_FRAME / SAMPLE_RATE
    opts.frame_opts.frame_shift_ms = 1000 * FBANK_SHIFT / SAMPLE_RATE
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = FBANK_BINS
    opts.energy_floor = 0.0
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SAMPLE_RATE, np.asarray(samples_int16, dtype=np.float32).tolist())
    fbank.input_finished()
    n = fbank.num_frames_ready
    if n == 0:
        return np.zeros((0, FBANK_BINS), np.float32)
    return np.stack([np.asarray(fbank.get_frame(i), dtype=np.float32) for i in range(n)])


@dataclass
class WenetTeacher:
    """The user's wenet `encoder.onnx` (Ultralight's 3-layer unified conformer)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise AudioTeacherError(f"{self.path}: no such wenet encoder file")
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a file onnxruntime rejects is not an encoder
            raise AudioTeacherError(
                f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            ) from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != set(WENET_INPUTS):
            raise AudioTeacherError(
                f"{self.path}: not a wenet streaming encoder: inputs {sorted(inputs)}, expected "
                f"{', '.join(WENET_INPUTS)} (Ultralight's encoder.onnx)"
            )
        self.output = self.session.get_outputs()[0].name
        self.att_cache = np.zeros(self._shape(inputs["att_cache"], WENET_ATT_CACHE), np.float32)
        self.cnn_cache = np.zeros(self._shape(inputs["cnn_cache"], WENET_CNN_CACHE), np.float32)
        self.offset = np.full((1,), WENET_OFFSET, dtype=np.int64)
        probe = self._call(np.zeros((WENET_WINDOW, FBANK_BINS), np.float32))
        if probe.shape != WENET_OUT:
            raise AudioTeacherError(
                f"{self.path}: the encoder gives {list(probe.shape)} per 67-frame window; Ultralight's wenet "
                f"features are {list(WENET_OUT)}"
            )

    @staticmethod
    def _shape(arg, default: tuple[int, ...]) -> tuple[int, ...]:
        shape = arg.shape
        if all(isinstance(d, int) and d > 0 for d in shape):
            return tuple(shape)
        return default  # symbolic dims: Ultralight's values

    def _call(self, window: np.ndarray) -> np.ndarray:
        feed = {
            "chunk": window[None].astype(np.float32),
            "offset": self.offset,
            "att_cache": self.att_cache,
            "cnn_cache": self.cnn_cache,
        }
        try:
            out = self.session.run([self.output], feed)[0]
        except Exception as exc:  # noqa: BLE001
            raise AudioTeacherError(
                f"{self.path}: the encoder failed on a [1,67,80] window ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]})"
            ) from None
        return np.asarray(out)[0]

    def features(self, pcm: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """[N, 16, 512], one encoder window per 20 fps frame (N = frames + 1)."""
        x = pcm_as_ultralight_int16(pcm)
        x = np.concatenate([np.zeros(WENET_PAD_BEFORE, np.float32), x, np.zeros(WENET_PAD_AFTER, np.float32)])
        fbank = kaldi_fbank(x)
        starts = wenet_windows(fbank.shape[0])
        out = np.zeros((len(starts), *WENET_OUT), np.float32)
        for k, start in enumerate(starts):
            window = fbank[start : start + WENET_WINDOW]
            if window.shape[0] < WENET_WINDOW:
                window = np.concatenate([window, np.zeros((WENET_WINDOW - window.shape[0], FBANK_BINS), np.float32)])
            out[k] = self._call(window)
            if progress:
                progress(k + 1, len(starts))
        return out


def open_teacher(mode: str, path: str | Path) -> HubertTeacher | WenetTeacher:
    if mode == "hubert":
        return HubertTeacher(Path(path))
    if mode == "wenet":
        return WenetTeacher(Path(path))
    raise AudioTeacherError(f"unknown audio mode {mode!r}: hubert or wenet")


# ----------------------------------------------------------------------------- files


def feature_file_for(wav: Path, mode: str, out_dir: Path | None = None) -> Path:
    """Ultralight's naming: `x.wav` -> `x_hu.npy` (hubert) or `x_wenet.npy` (wenet)."""
    suffix = "_hu.npy" if mode == "hubert" else "_wenet.npy"
    return (out_dir or wav.parent) / (wav.stem + suffix)


@dataclass(frozen=True)
class FeatureJob:
    wav: Path
    out: Path
    n_images: int | None  # a dataset folder's video frames, to check the count against


def plan_feature_jobs(mode: str, inputs: list[Path], out_dir: Path | None, force: bool) -> list[FeatureJob]:
    """What `dhm features` will write, checked before any model is loaded: each input is a
    WAV or a dataset folder (its aud.wav; the features go into the folder)."""
    from dhm.data.dataset import IMAGE_DIR, WAV_FILE

    jobs: list[FeatureJob] = []
    for path in inputs:
        if path.is_dir():
            wav = path / WAV_FILE
            if not wav.is_file():
                raise AudioTeacherError(f"{path}: a folder without {WAV_FILE} (give WAV files or dataset folders)")
            images = path / IMAGE_DIR
            n_images = sum(1 for p in images.glob("*.jpg")) if images.is_dir() else None
            jobs.append(FeatureJob(wav, feature_file_for(wav, mode, out_dir), n_images))
        elif path.is_file():
            jobs.append(FeatureJob(path, feature_file_for(path, mode, out_dir), None))
        else:
            raise AudioTeacherError(f"{path}: no such WAV file or dataset folder")
    outs = [j.out for j in jobs]
    if len(set(outs)) != len(outs):
        raise AudioTeacherError("two inputs would write the same feature file; give them separate -o folders")
    for job in jobs:
        if job.out.exists() and not force:
            raise AudioTeacherError(f"{job.out}: exists; --force replaces it")
    return jobs


def run_feature_job(teacher: HubertTeacher | WenetTeacher, mode: str, job: FeatureJob) -> tuple[np.ndarray, int]:
    """Features of one WAV, written atomically; returns them and the WAV's own rate."""
    from dhm.audio.frontend import read_pcm
    from dhm.data.dataset import COUNT_TOLERANCE
    from dhm.io import atomic_path
    from dhm.spec import AUDIO_MODES

    pcm, rate = read_pcm(job.wav, first_channel=True)  # Ultralight: speech[:, 0]
    feats = teacher.features(pcm)
    fps = AUDIO_MODES[mode].fps
    if job.n_images is not None and abs(feats.shape[0] - job.n_images) > COUNT_TOLERANCE:
        raise AudioTeacherError(
            f"{job.wav}: {feats.shape[0]} feature frames for {job.n_images} video frames in {job.wav.parent} "
            f"({pcm.size / SAMPLE_RATE:.2f} s of audio at {fps} fps); are the audio and video the same clip?"
        )
    with atomic_path(job.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats)
    return feats, rate
