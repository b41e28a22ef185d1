"""Speech-hop precision and recall of the two detectors (dhm.runtime_py.vad) on espeak-ng
speech with pauses, three voices, clean and with white noise at 10 and 0 dB SNR.
Usage: python tests/tools/measure_vad.py"""

from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import espeak_pcm, with_noise  # noqa: E402

from dhm.runtime_py.vad import EnergyGate, SileroVad, score_frames, speech_mask  # noqa: E402

VOICES = ("en", "en-us+f3", "en+m7")


def main() -> None:
    print("| voice | noise | detector | precision | recall |\n|---|---|---|---:|---:|")
    for voice in VOICES:
        clean = espeak_pcm(voice)
        truth = speech_mask(clean)
        for label, pcm in (("clean", clean), ("10 dB", with_noise(clean, 10)), ("0 dB", with_noise(clean, 0))):
            for name, detector in (("silero", SileroVad()), ("energy", EnergyGate())):
                r = score_frames(detector.run(pcm), truth)
                print(f"| {voice} | {label} | {name} | {r['precision']:.3f} | {r['recall']:.3f} |")


if __name__ == "__main__":
    main()
