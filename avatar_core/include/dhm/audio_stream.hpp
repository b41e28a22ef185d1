// Audio in, frames out, streamed: 16 kHz mono PCM in chunks of any size goes through the
// audio model (an Engine: PCM window -> feature rows) into per-frame features, and every
// frame whose features are complete is rendered. Step for step as
// dhm.runtime_py.streaming.PcmFeatureStream and dhm.runtime_py.pipeline.PcmSession in Python:
// any chunking gives the same frames, and after finish() they equal offline rendering of the
// utterance's features.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "dhm/avatar.hpp"
#include "dhm/engine.hpp"
#include "dhm/manifest.hpp"
#include "dhm/voice.hpp"

namespace dhm {

class PcmFeatureStream {
public:
    // `engine` must take the audio model's input and give its output (checked here).
    PcmFeatureStream(const Manifest& manifest, Engine& engine);

    // Add samples; returns how many feature frames became complete.
    int push(const float* samples, size_t n);
    // The utterance has ended: the remaining frames, padded as offline features are.
    int finish();

    // Lazy (a session resting the mouth in silence): a completed PCM window waits until a frame
    // that reads it is asked for through compute(); otherwise each runs as it completes.
    void set_lazy(bool lazy) { lazy_ = lazy; }
    // Feature frames [first, last) (clipped to those held) computed, running the audio model where needed.
    void compute(long long first, long long last);

    // Feature frames from feature_base() on, per-frame values each: only what later windows read
    // unless keep_history(true) (tests comparing a whole utterance), so an hour holds what a second does.
    // A lazy stream's frames are zeros until compute() reaches them.
    const std::vector<float>& features() const { return features_; }
    long long feature_base() const { return feature_base_; }
    void keep_history(bool keep) { keep_ = keep; }
    void forget_features_before(long long frame);
    int frames() const { return frames_out_; }
    long long samples() const { return n_samples_; }
    bool finished() const { return finished_; }
    double audio_ms() const { return audio_ms_; }  // time spent in the audio model
    long long calls_run() const { return calls_run_; }  // audio model runs so far
    long long calls_ready() const { return n_calls_; }  // PCM windows completed
    // PCM past the end of frame i needed before generator frame i can be rendered.
    long long lookahead_samples() const;

private:
    long long samples_for_call(long long call) const;
    int last_row_of_frame(long long frame) const;
    void prepare(long long call);
    const float* row(long long r);
    void fill(long long frame);
    void emit(long long frame, long long valid_rows);
    void forget_calls_before_frame(long long frame);

    const AudioModelConfig& am_;
    const AudioConfig& audio_;
    Engine& engine_;
    std::vector<float> pcm_;  // unread PCM; pcm_[0] is buffer position base_ (pad_left zeros first)
    long long base_ = 0;
    long long n_samples_ = 0;
    long long n_calls_ = 0;                             // PCM windows completed
    std::map<long long, std::vector<float>> windows_;  // completed windows not yet run
    std::map<long long, std::vector<float>> rows_;     // each run's rows, rows_per_call * row_size values
    long long calls_run_ = 0;
    std::vector<float> features_;  // feature frames from feature_base_ on
    std::vector<long long> valid_;  // per held frame: rows past this are zeros (-1: none)
    std::vector<char> filled_;      // per held frame: computed
    long long feature_base_ = 0;
    bool keep_ = false;
    bool lazy_ = false;
    int frames_out_ = 0;
    bool finished_ = false;
    double audio_ms_ = 0;
};

// The app supplies reference frames by index (decoded image and landmarks).
using ReferenceSource = std::function<ReferenceFrame(int reference_index)>;

// Two ways to drive it: push_pcm(samples, n, references) renders every ready frame with
// frames fetched through `references`; or, where the app loads frames itself (the JNI
// and Objective-C++ bridges), push() / finish() say how many frames are ready,
// next_reference() names the frame the next one is painted on, render_next() paints it.
class PcmSession {
public:
    // `avatar` renders; `audio_engine` runs the manifest's audio model; references follow
    // Ultralight's ping-pong order over `n_reference_frames` frames.
    PcmSession(AvatarSession& avatar, std::unique_ptr<Engine> audio_engine, int n_reference_frames);

    // Rest the mouth in silence (dhm.runtime_py.session with idle): `vad_engine` runs the
    // manifest's voice detector; in silence frames are the footage (`footage`: reference
    // indices in clip order, walked ping-pong) and no model runs; around speech the
    // generated frame fades in and out over the manifest's ramp. `mouth`: the open-mouthed
    // clip frames (clip.json's idle_footage.mouth, walked ping-pong) whose faces the generator
    // sees as its reference while it paints the footage; empty: the painted frame's own.
    // Call before any push.
    void rest_in_silence(std::unique_ptr<Engine> vad_engine, std::vector<int> footage, std::vector<int> mouth = {});

    int push(const float* samples, size_t n);  // returns pending()
    int finish();                              // returns pending()
    int next_share() const;                    // the next frame's generated share (256: all; 0: footage)
    int frames_inferred() const { return inferred_; }
    int last_share() const { return last_share_; }  // the last rendered frame's share (0: footage)
    const VoiceActivity* voice() const { return voice_.get(); }
    VoiceActivity* voice_mut() { return voice_.get(); }
    int pending() const { return ready_ - next_frame_; }
    int next_reference() const;
    // The frame whose face is the generator's reference for the next frame (-1: none to load,
    // the next frame is footage or has no separate one).
    int next_mouth_reference() const;
    Image render_next(const ReferenceFrame& reference, double load_ms = 0.0, const ReferenceFrame* mouth = nullptr);

    std::vector<Image> push_pcm(const float* samples, size_t n, const ReferenceSource& references);
    std::vector<Image> finish(const ReferenceSource& references);

    const PcmFeatureStream& stream() const { return *stream_; }
    void keep_history(bool keep) { stream_->keep_history(keep); }
    int frames_rendered() const { return next_frame_; }
    // Algorithmic audio-to-frame latency: the audio model's window plus the generator's
    // W/2-1 feature frames of lookahead (compute time comes on top).
    double lookahead_ms() const;

private:
    std::vector<Image> render_pending(const ReferenceSource& references);

    AvatarSession& avatar_;
    std::unique_ptr<Engine> audio_engine_;
    std::unique_ptr<PcmFeatureStream> stream_;
    int n_references_;
    int ready_ = 0;
    int next_frame_ = 0;
    std::unique_ptr<VoiceActivity> voice_;
    std::vector<int> footage_;
    std::vector<int> mouth_;
    int ramp_ = 0;
    int inferred_ = 0;
    int last_share_ = kBlendOne;
};

}  // namespace dhm
