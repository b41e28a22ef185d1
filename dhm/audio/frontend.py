"""dhm's own audio front end: log-mel features packed into Ultralight's layouts.

Real Ultralight datasets carry HuBERT (`aud_hu.npy`, [N,2,1024] at 25 fps) or wenet
(`aud_wenet.npy`, [N,16,512] at 20 fps) features computed by large speech models that
dhm cannot download. The built-in data instead uses a small, numpy-only front end with
the same array layouts, so the Ultralight architecture trains on it unchanged:

* log-mel spectrogram, 16 kHz, 25 ms window, 10 ms hop, 80 bands, fixed normalisation;
* HuBERT layout: 50 Hz steps (two mel hops each), every step's 160 values mapped to 1024
  by a fixed seeded projection; two steps per 25 fps video frame;
* wenet layout: for each 20 fps frame, 16 consecutive mel hops (a 160 ms context centred
  on the frame), each mapped 80 -> 512 by another fixed projection.

The projections are part of the front end's definition (`FRONTEND_ID`); models trained
on its features must be fed by the same front end, which is what `--wav` uses.
"""

from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

from dhm.errors import DatasetError
from dhm.spec import AUDIO_MODES

FRONTEND_ID = "dhm-logmel-v1"
SAMPLE_RATE = 16000
N_FFT = 512
WIN = 400
HOP = 160  # 10 ms
N_MELS = 80
# Fixed normalisation (not data dependent, so streaming and offline agree).
LOG_FLOOR = 1e-6
LOG_MEAN = -6.0
LOG_STD = 4.0
_PROJECTION_SEED = 0x0D11A7


def read_wav(path: str | Path, first_channel: bool = False) -> tuple[np.ndarray, int]:
    """Read a PCM16 WAV as float32 mono in [-1, 1]: channels averaged, or (`first_channel`,
    as Ultralight's feature scripts do) the first one."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            n_ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable WAV file ({str(exc) or 'truncated, or not RIFF/WAVE'})") from None
    if width != 2:
        raise DatasetError(f"{path}: {8 * width}-bit WAV; dhm reads 16-bit PCM")
    if not 1 <= n_ch <= 32 or not 1000 <= rate <= 384_000:
        raise DatasetError(f"{path}: {n_ch} channels at {rate} Hz is not an audio file dhm can read")
    usable = len(raw) // (2 * n_ch) * 2 * n_ch  # a truncated last frame is dropped
    samples = np.frombuffer(raw[:usable], dtype="<i2").astype(np.float32) / 32768.0
    if n_ch > 1:
        frames = samples.reshape(-1, n_ch)
        samples = np.ascontiguousarray(frames[:, 0]) if first_channel else frames.mean(axis=1)
    return samples, rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr's HQ filter: what `librosa.resample` (its default
    res_type "soxr_hq") does in Ultralight's `data_utils/hubert.py`, so features of a 44.1 or
    48 kHz WAV match the ones the model was trained on. Linear interpolation (np.interp,
    used before) folds everything above 8 kHz back into the speech band: a 12 kHz tone at
    48 kHz came out at -0.0 dB (soxr: -232 dB) and the log-mel error against an ideal
    band-limited resampler was 15-20x larger (0.20-0.24 vs 0.011-0.013 mean)."""
    import soxr

    if rate == target:
        return samples.astype(np.float32)
    return soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), rate, target, "HQ").astype(np.float32)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """[N_MELS, N_FFT//2+1] triangular filters on the HTK mel scale, 20 Hz to 8 kHz."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    mels = np.linspace(hz_to_mel(np.array(20.0)), hz_to_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2)
    hz = mel_to_hz(mels)
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    fb = np.zeros((N_MELS, bins.size))
    for m in range(N_MELS):
        lo, mid, hi = hz[m], hz[m + 1], hz[m + 2]
        up = (bins - lo) / (mid - lo)
        down = (hi - bins) / (hi - mid)
        fb[m] = np.maximum(0.0, np.minimum(up, down))
    return fb


def log_mel(samples: np.ndarray, n_hops: int | None = None) -> np.ndarray:
    """Normalised log-mel frames [T, 80]; frame t is centred on sample t*HOP."""
    samples = np.asarray(samples, dtype=np.float64)
    if n_hops is None:
        n_hops = len(samples) // HOP + 1
    pad = N_FFT // 2
    padded = np.pad(samples, (pad, pad + n_hops * HOP))
    return hops_log_mel(padded, n_hops).astype(np.float32)


def stft_window() -> np.ndarray:
    """The analysis window: a WIN-sample Hann window centred in N_FFT samples."""
    window = np.zeros(N_FFT)
    off = (N_FFT - WIN) // 2
    window[off : off + WIN] = np.hanning(WIN)
    return window


def hops_log_mel(pcm: np.ndarray, n_hops: int) -> np.ndarray:
    """The front end's one definition (float64, as training computed its features): hop h is
    the normalised log-mel of samples [HOP*h, HOP*h + N_FFT) of `pcm` -> [n_hops, N_MELS].
    The offline features, the per-window reference and the exported network all follow it."""
    idx = np.arange(n_hops)[:, None] * HOP + np.arange(N_FFT)[None, :]
    power = np.abs(np.fft.rfft(np.asarray(pcm, dtype=np.float64)[idx] * stft_window(), axis=1)) ** 2
    return (np.log(power @ mel_filterbank().T + LOG_FLOOR) - LOG_MEAN) / LOG_STD


@lru_cache(maxsize=2)
def _projection(n_in: int, n_out: int, salt: int) -> np.ndarray:
    rng = np.random.default_rng([_PROJECTION_SEED, salt])
    return (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)


def hubert_layout(mel: np.ndarray, n_frames: int) -> np.ndarray:
    """[n_frames, 2, 1024]: frame i holds 50 Hz steps 2i and 2i+1 (mel hops 4i..4i+3)."""
    need = 4 * n_frames
    mel = _pad_rows(mel, need)
    steps = mel[:need].reshape(2 * n_frames, 2 * N_MELS)
    packed = steps @ _projection(2 * N_MELS, 1024, 1)
    return packed.reshape(n_frames, *AUDIO_MODES["hubert"].per_frame_shape).astype(np.float32)


def wenet_layout(mel: np.ndarray, n_frames: int) -> np.ndarray:
    """[n_frames, 16, 512]: frame i (at 20 fps = 5 hops) holds hops 5i-8 … 5i+7."""
    if n_frames == 0:  # under one frame of audio (rows.max() of nothing would raise)
        return np.zeros((0, *AUDIO_MODES["wenet"].per_frame_shape), dtype=np.float32)
    rows = np.arange(n_frames)[:, None] * 5 + np.arange(-8, 8)[None, :]
    mel = _pad_rows(mel, int(rows.max()) + 1)
    picked = np.where((rows >= 0)[..., None], mel[np.clip(rows, 0, None)], 0.0)
    packed = picked.reshape(-1, N_MELS) @ _projection(N_MELS, 512, 2)
    return packed.reshape(n_frames, *AUDIO_MODES["wenet"].per_frame_shape).astype(np.float32)


def _pad_rows(mel: np.ndarray, n: int) -> np.ndarray:
    if mel.shape[0] >= n:
        return mel
    return np.concatenate([mel, np.zeros((n - mel.shape[0], mel.shape[1]), mel.dtype)])


def features_for_mode(samples: np.ndarray, mode: str, n_frames: int | None = None) -> np.ndarray:
    """Audio features in `mode`'s Ultralight layout for 16 kHz mono samples."""
    fps = AUDIO_MODES[mode].fps
    if n_frames is None:
        n_frames = int(len(samples) * fps // SAMPLE_RATE)
    mel = log_mel(samples)
    if mode == "hubert":
        return hubert_layout(mel, n_frames)
    if mode == "wenet":
        return wenet_layout(mel, n_frames)
    raise ValueError(mode)


def read_pcm(path: str | Path, first_channel: bool = False) -> tuple[np.ndarray, int]:
    """A WAV as 16 kHz mono float PCM (resampled when it is not), and its own rate."""
    samples, rate = read_wav(path, first_channel)
    return resample(samples, rate), rate


def features_from_wav(path: str | Path, mode: str) -> np.ndarray:
    return features_for_mode(read_pcm(path)[0], mode)


# ----------------------------------------------------------------- the front end


def logmel_hops_module():
    """dhm's log-mel front end as a fixed torch network: [B,1,L] PCM -> [B,80,hops]
    normalised log-mel, hop h from samples [160h, 160h+512) of the input (Conv1d STFT of
    windowed cos/sin kernels, stride HOP; power; 1x1 mel conv; log; normalisation).
    Shared by the exported front end and the distilled audio students."""
    import torch
    from torch import nn

    n_bins = N_FFT // 2 + 1
    t = np.arange(N_FFT)[None, :]
    f = np.arange(n_bins)[:, None]
    ang = 2.0 * np.pi * f * t / N_FFT
    win = stft_window()[None, :]
    stft = np.concatenate([np.cos(ang) * win, -np.sin(ang) * win])[:, None, :]  # [2*bins, 1, N_FFT]

    class LogMelHops(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stft = fixed_conv(stft, stride=HOP)
            self.mel = fixed_conv(mel_filterbank()[:, :, None])

        def forward(self, pcm: torch.Tensor) -> torch.Tensor:
            spectrum = self.stft(pcm)  # [B, 2*bins, hops]
            re, im = spectrum[:, :n_bins], spectrum[:, n_bins:]
            return (torch.log(self.mel(re * re + im * im) + LOG_FLOOR) - LOG_MEAN) * (1.0 / LOG_STD)

    return LogMelHops().eval()


def fixed_conv(weight: np.ndarray, stride: int = 1):
    """A Conv1d with a fixed (non-trainable) kernel [out, in, k]."""
    import torch
    from torch import nn

    conv = nn.Conv1d(weight.shape[1], weight.shape[0], weight.shape[2], stride=stride, bias=False)
    conv.weight = nn.Parameter(torch.tensor(weight, dtype=torch.float32), requires_grad=False)
    return conv
