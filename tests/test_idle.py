"""A mouth that rests in silence (dhm.runtime_py.idle, PcmSession with idle): the speaker's
footage and no model in silence, the generated mouth blended in and out around speech, the
same frames for any chunking, and an hour's stream holding what a second's does."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli

from dhm.audio.frontend import SAMPLE_RATE, read_wav, write_wav
from dhm.runtime_py.idle import (
    BLEND_ONE,
    FrameVoice,
    IdleFootage,
    IdleSettings,
    blend,
    frame_speech,
    generated_share,
    longest_silence,
)
from dhm.runtime_py.vad import HOP, EnergyGate

SPF = SAMPLE_RATE // 25


def _tone_with_gaps(pattern: str, frame_s: float = 0.2) -> np.ndarray:
    """'s' for a 200 ms vowel-like tone, '_' for 200 ms of near silence."""
    t = np.arange(int(frame_s * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    quiet = (1e-4 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    return np.concatenate([tone if c == "s" else quiet for c in pattern])


def test_generated_share_ramps_linearly_around_speech():
    speech = {10, 11, 12}
    share = [generated_share(i, lambda j: j in speech, 2) for i in range(6, 17)]
    assert share == [0, 0, 85, 170, 256, 256, 256, 170, 85, 0, 0]  # 256 * (3 - d) // 3
    assert [generated_share(i, lambda j: j in speech, 0) for i in (9, 10, 13)] == [0, 256, 0]


def test_blend_is_exact_integer_arithmetic():
    g = np.full((2, 2, 3), 200, np.uint8)
    f = np.full((2, 2, 3), 100, np.uint8)
    assert blend(g, f, 256) is g
    assert int(blend(g, f, 0)[0, 0, 0]) == 100
    assert int(blend(g, f, 128)[0, 0, 0]) == (200 * 128 + 100 * 128 + 128) >> 8 == 150
    assert int(blend(g, f, 85)[0, 0, 0]) == (200 * 85 + 100 * 171 + 128) >> 8


def test_frame_voice_maps_hops_to_frames_for_any_chunking():
    pcm = _tone_with_gaps("__ss___s__")
    n = pcm.size // SPF
    whole = frame_speech(pcm, SPF, n, EnergyGate(hangover=0))
    assert whole.any() and not whole.all()
    assert not whole[:8].any()  # the first 400 ms are quiet
    voice, rng, at = FrameVoice(EnergyGate(hangover=0), SPF), np.random.default_rng(3), 0
    while at < pcm.size:
        step = int(rng.integers(1, 3 * HOP))
        voice.push(pcm[at : at + step])
        at += step
    voice.flush(n)
    assert [voice.speaks(i) for i in range(n)] == whole.tolist()


def test_longest_silence_leaves_a_margin_next_to_speech():
    speech = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    assert longest_silence(speech, 1) == (5, 9)
    assert longest_silence(np.ones(5, bool), 1) == (0, 0)
    assert longest_silence(np.zeros(5, bool), 1) == (0, 5)  # silence throughout: no speech to keep off


# ------------------------------------------------------------------ the session


@pytest.fixture(scope="module")
def avatar(teacher, synth_hubert):
    from dhm.data.dataset import open_dataset
    from dhm.runtime_py.engines import conventions_of, load
    from dhm.runtime_py.streaming import audio_front_end

    engine = load(teacher, threads=1)
    return engine, conventions_of(engine), open_dataset(synth_hubert), audio_front_end(engine)


def _pcm(synth_hubert) -> np.ndarray:
    """0.8 s of silence, 1.6 s of the clip's speech, 1.2 s of silence, 0.8 s of speech."""
    speech = read_wav(synth_hubert / "aud.wav")[0]
    z = np.zeros(SAMPLE_RATE, np.float32)
    return np.concatenate([z[:12800], speech[:25600], z, z[:3200], speech[25600:38400]])


def _session_frames(avatar, pcm, idle, chunk):
    from dhm.runtime_py.pipeline import AvatarPipeline
    from dhm.runtime_py.session import PcmSession

    engine, conv, ds, front = avatar
    session = PcmSession(AvatarPipeline(engine, ds, conv), front, idle)
    frames = []
    for at in range(0, pcm.size, chunk):
        frames += session.push_pcm(pcm[at : at + chunk])
    return frames + session.finish(), session


def test_silence_shows_the_footage_and_speech_the_generated_mouth(avatar, synth_hubert):
    from dhm.runtime_py.session import IdleRun

    engine, conv, ds, front = avatar
    pcm = _pcm(synth_hubert)
    plain, plain_session = _session_frames(avatar, pcm, None, 320)
    # the whole clip as footage: the same reference schedule as without idle frames
    footage = IdleFootage(list(range(ds.n_frames)), "test", False)
    idle = IdleRun(IdleSettings(ramp=2), footage)
    rested, session = _session_frames(avatar, pcm, idle, 320)
    assert len(rested) == len(plain) == pcm.size // SPF
    shares = session.shares.tolist()
    silent = [i for i, s in enumerate(shares) if s == 0]
    speech = [i for i, s in enumerate(shares) if s == BLEND_ONE]
    fades = [i for i, s in enumerate(shares) if 0 < s < BLEND_ONE]
    assert len(silent) >= 35 and len(speech) >= 40 and fades
    assert not any(shares[:14])  # the leading 0.8 s, less the fade-in
    for i in silent:  # exactly the footage, no model ran
        assert np.array_equal(rested[i], ds.frame(footage.reference(i)))
    for i in speech:  # exactly what the session paints without idle frames
        assert np.array_equal(rested[i], plain[i])
    for i in fades:  # between the two, pixel by pixel
        lo = np.minimum(plain[i], ds.frame(footage.reference(i))).astype(int)
        hi = np.maximum(plain[i], ds.frame(footage.reference(i))).astype(int)
        assert ((rested[i] >= lo) & (rested[i] <= hi)).all()
    s = session.summary()
    assert s["inferred"] == len(speech) + len(fades) < len(rested) == s["frames"]
    assert s["audio_calls"] < plain_session.summary()["audio_calls"] == s["audio_calls_available"]
    again, _ = _session_frames(avatar, pcm, idle, 777)
    assert all(np.array_equal(a, b) for a, b in zip(again, rested, strict=True))


def test_pure_silence_runs_no_model(avatar, synth_hubert):
    from dhm.runtime_py.session import IdleRun

    ds = avatar[2]
    idle = IdleRun(IdleSettings(), IdleFootage([3, 4, 5, 6], "test", True))
    frames, session = _session_frames(avatar, np.zeros(2 * SAMPLE_RATE, np.float32), idle, 320)
    s = session.summary()
    assert (s["frames"], s["inferred"], s["speech_frames"], s["audio_calls"]) == (50, 0, 0, 0)
    assert all(np.array_equal(f, ds.frame(idle.footage.reference(i))) for i, f in enumerate(frames))


def test_a_long_stream_keeps_only_what_later_frames_read(avatar):
    from dhm.runtime_py.streaming import PcmFeatureStream

    front = avatar[3]
    stream = PcmFeatureStream(front.spec, front.rows)
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(300):  # 60 s
        stream.push((0.1 * rng.standard_normal(3200)).astype(np.float32))
        sizes.append(len(stream.windows) + len(stream.call_rows) + len(stream.frame_cache) + stream.pcm.size)
    assert stream.frames_out >= 1495 and max(sizes[-100:]) <= max(sizes[:10]) + 8


def test_run_wav_of_silence_says_no_frame_was_generated(teacher, synth_hubert, tmp_path):
    wav = tmp_path / "quiet.wav"
    write_wav(wav, np.zeros(SAMPLE_RATE, np.float32))
    r = run_cli("run", teacher, "--data", synth_hubert, "--wav", wav, "-o", tmp_path / "q.mp4")
    assert r.exit_code == 0, r.output
    assert "none of the 25 frames was generated" in r.output and "no frame needed a model" in r.output
    r = run_cli("run", teacher, "--data", synth_hubert, "--wav", wav, "-o", tmp_path / "e.mp4", "--vad", "energy")
    assert r.exit_code == 0 and "energy gate" in r.output, r.output
    r = run_cli("run", teacher, "--data", synth_hubert, "--wav", wav, "-o", tmp_path / "n.mp4", "--no-idle")
    assert r.exit_code == 0 and "idle:" not in r.output, r.output


def test_speech_on_footage_takes_its_reference_face_from_open_mouthed_frames(avatar, synth_hubert):
    """The generator learned the inside of the mouth from its reference input: on closed-mouthed
    footage it is fed open-mouthed clip frames (by their lip landmarks) as that reference."""
    from dhm.data.inputs import true_openness
    from dhm.runtime_py.idle import open_mouth_frames
    from dhm.runtime_py.session import IdleRun

    engine, conv, ds, front = avatar
    mouth = open_mouth_frames(ds, ds.n_frames)
    truth = np.asarray(true_openness(ds.root))
    assert len(mouth) == round(0.25 * ds.n_frames) and mouth == sorted(mouth)
    assert truth[mouth].mean() > 2 * truth.mean()  # the landmarks find the open mouths
    footage = IdleFootage([3, 4, 5, 6], "test", True, mouth)
    fed = []
    run = engine.run
    engine.run = lambda inputs: fed.append(inputs["face"][0, :3].copy()) or run(inputs)  # the reference half
    try:
        _, session = _session_frames(avatar, _pcm(synth_hubert), IdleRun(IdleSettings(), footage), 320)
    finally:
        engine.run = run
    generated = [i for i, s in enumerate(session.shares) if s]
    assert len(fed) == len(generated) > 0
    from dhm.data.preprocess import crop_face, face_input, inner

    pre = conv.preprocess
    for i, got in zip(generated[:5], fed, strict=False):
        m = footage.mouth_reference(i)
        want = face_input(
            inner(crop_face(ds.frame(m), ds.boxes[m], pre), pre),
            inner(crop_face(ds.frame(m), ds.boxes[m], pre), pre),
            pre,
        )
        assert m in mouth and np.array_equal(got, want[:3])
