// Voice activity and idle frames, step for step as dhm.runtime_py.vad (SileroVad, Hysteresis)
// and dhm.runtime_py.idle (FrameVoice, generated_share, blend): the manifest's `vad` model
// (silero-vad, sample rate fixed) scores 512-sample hops with its recurrent state; a hop's
// score is the largest of its own and the next `lookahead` hops'; hysteresis turns scores into
// decisions; a video frame speaks when any hop overlapping its samples does. Around speech
// the generated frame is blended with the footage over `ramp` frames on either side.
#pragma once

#include <memory>
#include <vector>

#include "dhm/engine.hpp"
#include "dhm/image.hpp"
#include "dhm/manifest.hpp"

namespace dhm {

constexpr int kBlendOne = 256;  // blend weights in 1/256ths

class VoiceActivity {
public:
    // `engine` runs the manifest's vad model (checked against its inputs); `samples_per_frame`
    // is the video frame's length in samples.
    VoiceActivity(const VadConfig& vad, std::unique_ptr<Engine> engine, int samples_per_frame);

    void push(const float* samples, size_t n);
    void flush(long long n_frames);  // the stream ended with n_frames video frames: decide them all
    long long decided() const { return frame_base_ + static_cast<long long>(frames_.size()); }
    bool speaks(long long frame) const;
    void forget_before(long long frame);
    // PCM past the end of frame i before frame i + ahead_frames is decided (the worst phase).
    long long lookahead_samples(int ahead_frames) const;
    const std::vector<float>& scores() const { return all_scores_; }  // every hop's score (tests)
    void keep_scores(bool keep) { keep_scores_ = keep; }

private:
    void score_hops(const float* hops, size_t n_hops);
    void decide(size_t n);
    void frames_from_hops(long long limit);

    const VadConfig& vad_;
    std::unique_ptr<Engine> engine_;
    long long spf_;
    std::vector<float> buffer_;       // samples of the hop not yet complete
    std::vector<float> context_;      // the last `context` samples of the previous hop
    std::vector<float> state_;        // the model's recurrent state
    std::vector<float> pending_;      // scores of hops not yet decided
    bool speaking_ = false;
    int quiet_ = 0;
    std::vector<char> hops_;          // decided hops from hop_base_ on
    long long hop_base_ = 0;
    std::vector<char> frames_;        // decided frames from frame_base_ on
    long long frame_base_ = 0;
    std::vector<float> all_scores_;
    bool keep_scores_ = false;
};

// Frame i's generated share in 1/256ths: all of it in speech, falling linearly over `ramp`
// frames on either side of a speech run.
int generated_share(long long i, const VoiceActivity& voice, int ramp);
// (g * share + f * (256 - share) + 128) >> 8 per channel, into `generated`.
void blend_into(Image& generated, const Image& footage, int share);

}  // namespace dhm
