#include "dhm/voice.hpp"

#include <algorithm>
#include <cstring>

#include "dhm/error.hpp"

namespace dhm {

VoiceActivity::VoiceActivity(const VadConfig& vad, std::unique_ptr<Engine> engine, int samples_per_frame)
    : vad_(vad), engine_(std::move(engine)), spf_(samples_per_frame) {
    if (!vad_.present) throw Error("manifest: no vad section; export again with `dhm export` to ship the voice detector");
    if (!engine_) throw Error("no voice detector engine");
    for (const TensorInfo& want : {vad_.input, vad_.state}) {
        bool found = false;
        for (const auto& g : engine_->inputs())
            if (g.name == want.name) {
                if (g.shape != want.shape)
                    throw Error(engine_->describe() + ": voice detector input '" + want.name + "' is " + shape_str(g.shape) +
                                ", the manifest says " + shape_str(want.shape));
                found = true;
            }
        if (!found) throw Error(engine_->describe() + ": no voice detector input named '" + want.name + "' (the manifest's)");
    }
    context_.assign(static_cast<size_t>(vad_.context), 0.0f);
    state_.assign(element_count(vad_.state.shape), 0.0f);
}

void VoiceActivity::score_hops(const float* hops, size_t n_hops) {
    const size_t hop = static_cast<size_t>(vad_.hop), ctx = static_cast<size_t>(vad_.context);
    for (size_t k = 0; k < n_hops; ++k) {
        const float* h = hops + k * hop;
        TensorMap in;
        Tensor& x = in[vad_.input.name];
        x.shape = vad_.input.shape;
        x.data.resize(ctx + hop);
        std::memcpy(x.data.data(), context_.data(), ctx * sizeof(float));
        std::memcpy(x.data.data() + ctx, h, hop * sizeof(float));
        Tensor& s = in[vad_.state.name];
        s.shape = vad_.state.shape;
        s.data = state_;
        TensorMap out = engine_->run(in);
        auto p = out.find(vad_.output), st = out.find(vad_.state_out);
        if (p == out.end() || p->second.data.empty() || st == out.end() || st->second.data.size() != state_.size())
            throw Error(engine_->describe() + ": the voice detector gave no '" + vad_.output + "' and '" + vad_.state_out + "'");
        state_ = st->second.data;
        std::memcpy(context_.data(), h + hop - ctx, ctx * sizeof(float));
        pending_.push_back(p->second.data[0]);
        if (keep_scores_) all_scores_.push_back(p->second.data[0]);
    }
}

void VoiceActivity::decide(size_t n) {
    for (size_t i = 0; i < n; ++i) {
        float s = pending_[i];
        for (size_t k = i + 1; k <= i + static_cast<size_t>(vad_.lookahead) && k < pending_.size(); ++k) s = std::max(s, pending_[k]);
        if (s >= vad_.on) {
            speaking_ = true;
            quiet_ = 0;
        } else if (speaking_ && s < vad_.off) {
            if (++quiet_ > vad_.hangover) {
                speaking_ = false;
                quiet_ = 0;
            }
        }
        hops_.push_back(speaking_ ? 1 : 0);
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
}

void VoiceActivity::frames_from_hops(long long limit) {
    const long long hop = vad_.hop;
    while (limit < 0 || decided() < limit) {
        const long long i = decided();
        const long long first = i * spf_ / hop, last = ((i + 1) * spf_ - 1) / hop;
        if (last >= hop_base_ + static_cast<long long>(hops_.size())) break;
        bool any = false;
        for (long long h = first; h <= last; ++h) any = any || hops_[static_cast<size_t>(h - hop_base_)];
        frames_.push_back(any ? 1 : 0);
    }
    // hops before the next frame's first hop are read by no later frame
    const long long keep_from = decided() * spf_ / hop;
    const long long drop = std::min<long long>(std::max<long long>(0, keep_from - hop_base_), static_cast<long long>(hops_.size()));
    hops_.erase(hops_.begin(), hops_.begin() + static_cast<std::ptrdiff_t>(drop));
    hop_base_ = std::max(hop_base_, keep_from);
}

void VoiceActivity::push(const float* samples, size_t n) {
    if (n > 0 && samples == nullptr) throw Error("voice activity: no samples");
    buffer_.insert(buffer_.end(), samples, samples + n);
    const size_t hop = static_cast<size_t>(vad_.hop), whole = buffer_.size() / hop;
    score_hops(buffer_.data(), whole);
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(whole * hop));
    const size_t ahead = static_cast<size_t>(vad_.lookahead);
    decide(pending_.size() > ahead ? pending_.size() - ahead : 0);
    frames_from_hops(-1);
}

void VoiceActivity::flush(long long n_frames) {
    if (!buffer_.empty()) {
        std::vector<float> pad(static_cast<size_t>(vad_.hop) - buffer_.size(), 0.0f);
        push(pad.data(), pad.size());
    }
    decide(pending_.size());
    frames_from_hops(n_frames);
    while (decided() < n_frames) frames_.push_back(0);  // frames past the last hop: silent
}

bool VoiceActivity::speaks(long long frame) const {
    const long long k = frame - frame_base_;
    return k >= 0 && k < static_cast<long long>(frames_.size()) && frames_[static_cast<size_t>(k)];
}

void VoiceActivity::forget_before(long long frame) {
    const long long n = std::max<long long>(0, std::min<long long>(frame - frame_base_, static_cast<long long>(frames_.size())));
    frames_.erase(frames_.begin(), frames_.begin() + static_cast<std::ptrdiff_t>(n));
    frame_base_ += n;
}

long long VoiceActivity::lookahead_samples(int ahead_frames) const {
    long long worst = 0;
    for (long long i = 0; i < 64; ++i) {
        const long long last_hop = ((i + ahead_frames + 1) * spf_ - 1) / vad_.hop + vad_.lookahead;
        worst = std::max(worst, (last_hop + 1) * vad_.hop - (i + 1) * spf_);
    }
    return worst;
}

int generated_share(long long i, const VoiceActivity& voice, int ramp) {
    for (int d = 0; d <= ramp; ++d)
        if (voice.speaks(i - d) || voice.speaks(i + d)) return (kBlendOne * (ramp + 1 - d)) / (ramp + 1);
    return 0;
}

void blend_into(Image& generated, const Image& footage, int share) {
    if (share >= kBlendOne) return;
    if (generated.data.size() != footage.data.size()) throw Error("blend: the generated frame and the footage differ in size");
    for (size_t k = 0; k < generated.data.size(); ++k)
        generated.data[k] = static_cast<uint8_t>((generated.data[k] * share + footage.data[k] * (kBlendOne - share) + kBlendOne / 2) >> 8);
}

}  // namespace dhm
