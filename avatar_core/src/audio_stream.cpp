#include "dhm/audio_stream.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "dhm/error.hpp"
#include "dhm/schedule.hpp"

namespace dhm {

static long long floor_div(long long a, long long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

PcmFeatureStream::PcmFeatureStream(const Manifest& m, Engine& engine) : am_(m.audio_model), audio_(m.audio), engine_(engine) {
    if (!am_.present)
        throw Error("manifest: no audio model; export the generator with `dhm export` from a checkpoint trained on dhm features");
    auto check = [&](const std::vector<TensorInfo>& got, const TensorInfo& want, const char* what) {
        for (const auto& g : got)
            if (g.name == want.name) {
                if (g.shape != want.shape)
                    throw Error(engine.describe() + ": audio model " + what + " '" + want.name + "' is " + shape_str(g.shape) +
                                ", the manifest says " + shape_str(want.shape));
                return;
            }
        throw Error(engine.describe() + ": no audio model " + what + " named '" + want.name + "' (the manifest's)");
    };
    check(engine.inputs(), am_.input, "input");
    check(engine.outputs(), am_.output, "output");
    pcm_.assign(static_cast<size_t>(am_.pad_left), 0.0f);
}

long long PcmFeatureStream::samples_for_call(long long c) const {
    return c * am_.rows_per_call * am_.row_hop - am_.pad_left + am_.window_samples;
}

int PcmFeatureStream::last_row_of_frame(long long i) const {
    return static_cast<int>(am_.frame_stride * i + am_.frame_offset + am_.frame_count - 1);
}

long long PcmFeatureStream::lookahead_samples() const {
    const long long spf = am_.sample_rate / audio_.fps;
    const long long call = floor_div(last_row_of_frame(audio_.window_after - 1), am_.rows_per_call);
    return samples_for_call(call) - spf;
}

void PcmFeatureStream::prepare(long long index) {
    const size_t start = static_cast<size_t>(index * am_.rows_per_call * am_.row_hop - base_);
    const size_t len = static_cast<size_t>(am_.window_samples);
    std::vector<float>& w = windows_[index];
    w.assign(len, 0.0f);  // past the end of the utterance: zeros, as offline
    if (start < pcm_.size()) std::memcpy(w.data(), pcm_.data() + start, std::min(len, pcm_.size() - start) * sizeof(float));
    n_calls_ = index + 1;
    if (!lazy_) row(index * am_.rows_per_call);
}

const float* PcmFeatureStream::row(long long r) {
    const long long c = r / am_.rows_per_call;
    auto have = rows_.find(c);
    if (have == rows_.end()) {
        auto w = windows_.find(c);
        if (w == windows_.end()) throw Error("audio stream: row " + std::to_string(r) + " was forgotten or is not ready");
        TensorMap in;
        Tensor& t = in[am_.input.name];
        t.shape = am_.input.shape;
        t.data = std::move(w->second);
        windows_.erase(w);
        auto t0 = std::chrono::steady_clock::now();
        TensorMap out = engine_.run(in);
        audio_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        ++calls_run_;
        auto it = out.find(am_.output.name);
        const size_t values = static_cast<size_t>(am_.rows_per_call) * am_.row_size;
        if (it == out.end() || it->second.data.size() != values)
            throw Error(engine_.describe() + ": no audio model output '" + am_.output.name + "' of shape " + shape_str(am_.output.shape));
        have = rows_.emplace(c, std::move(it->second.data)).first;
    }
    return have->second.data() + static_cast<size_t>(r % am_.rows_per_call) * am_.row_size;
}

void PcmFeatureStream::fill(long long i) {
    const size_t k0 = static_cast<size_t>(i - feature_base_);
    if (filled_[k0]) return;
    const size_t row_size = static_cast<size_t>(am_.row_size);
    float* out = features_.data() + k0 * row_size * am_.frame_count;
    const long long first = am_.frame_stride * i + am_.frame_offset, valid = valid_[k0];
    for (int k = 0; k < am_.frame_count; ++k) {
        const long long r = first + k;
        if (r < 0 || (valid >= 0 && r >= valid)) continue;  // zeros, as offline
        std::memcpy(out + k * row_size, row(r), row_size * sizeof(float));
    }
    filled_[k0] = 1;
}

void PcmFeatureStream::emit(long long i, long long valid_rows) {
    features_.resize(features_.size() + static_cast<size_t>(am_.row_size) * am_.frame_count, 0.0f);
    valid_.push_back(valid_rows);
    filled_.push_back(0);
    ++frames_out_;
    if (!lazy_) {
        fill(i);
        forget_calls_before_frame(frames_out_);  // the next frame reads rows from its first on
    }
}

void PcmFeatureStream::compute(long long first, long long last) {
    for (long long i = std::max(first, feature_base_); i < std::min<long long>(last, frames_out_); ++i) fill(i);
}

void PcmFeatureStream::forget_calls_before_frame(long long frame) {
    if (keep_) return;
    const long long first_row = am_.frame_stride * frame + am_.frame_offset;
    const long long last_call = floor_div(first_row, am_.rows_per_call) - 1;  // calls wholly before that row
    for (auto* store : {&windows_, &rows_})
        while (!store->empty() && store->begin()->first <= last_call) store->erase(store->begin());
}

void PcmFeatureStream::forget_features_before(long long frame) {
    if (keep_) return;
    const long long drop = std::min<long long>(frame, frames_out_) - feature_base_;
    if (drop <= 0) return;
    const long long per_frame = static_cast<long long>(am_.row_size) * am_.frame_count;
    features_.erase(features_.begin(), features_.begin() + static_cast<std::ptrdiff_t>(drop * per_frame));
    valid_.erase(valid_.begin(), valid_.begin() + static_cast<std::ptrdiff_t>(drop));
    filled_.erase(filled_.begin(), filled_.begin() + static_cast<std::ptrdiff_t>(drop));
    feature_base_ += drop;
    forget_calls_before_frame(feature_base_);
}

int PcmFeatureStream::push(const float* samples, size_t n) {
    if (finished_) throw Error("audio stream: samples pushed after finish(); start a new stream");
    if (n > 0 && samples == nullptr) throw Error("audio stream: no samples");
    pcm_.insert(pcm_.end(), samples, samples + n);
    n_samples_ += static_cast<long long>(n);
    while (samples_for_call(n_calls_) <= n_samples_) prepare(n_calls_);
    // drop what no later window reads
    const long long drop = n_calls_ * am_.rows_per_call * am_.row_hop - base_;
    if (drop > 0) {
        pcm_.erase(pcm_.begin(), pcm_.begin() + static_cast<std::ptrdiff_t>(std::min<long long>(drop, static_cast<long long>(pcm_.size()))));
        base_ += drop;
    }
    const long long spf = am_.sample_rate / audio_.fps;
    int ready = 0;
    while ((frames_out_ + 1LL) * spf <= n_samples_ && last_row_of_frame(frames_out_) < n_calls_ * am_.rows_per_call) {
        emit(frames_out_, -1);
        ++ready;
    }
    return ready;
}

int PcmFeatureStream::finish() {
    if (finished_) throw Error("audio stream: finish() called twice");
    finished_ = true;
    const long long n_frames = n_samples_ * audio_.fps / am_.sample_rate;
    if (n_frames > 0) {
        const long long need = last_row_of_frame(n_frames - 1);
        while (n_calls_ * am_.rows_per_call <= need) prepare(n_calls_);
    }
    const long long valid = (n_samples_ / am_.tail_hop + 1) / am_.hops_per_row;
    int ready = 0;
    for (long long i = frames_out_; i < n_frames; ++i, ++ready) emit(i, valid);
    return ready;
}

PcmSession::PcmSession(AvatarSession& avatar, std::unique_ptr<Engine> audio_engine, int n_references)
    : avatar_(avatar), audio_engine_(std::move(audio_engine)), n_references_(n_references) {
    if (!audio_engine_) throw Error("no audio engine");
    if (n_references_ < 1) throw Error("PCM session: no reference frames");
    stream_.reset(new PcmFeatureStream(avatar_.manifest(), *audio_engine_));
}

double PcmSession::lookahead_ms() const {
    long long samples = stream_->lookahead_samples();
    if (voice_) samples = std::max(samples, voice_->lookahead_samples(ramp_));
    return 1000.0 * static_cast<double>(samples) / avatar_.manifest().audio_model.sample_rate;
}

void PcmSession::rest_in_silence(std::unique_ptr<Engine> vad_engine, std::vector<int> footage, std::vector<int> mouth) {
    if (stream_->samples() > 0) throw Error("PCM session: rest_in_silence() after audio was pushed");
    if (footage.empty()) throw Error("PCM session: no idle footage frames");
    for (const auto* list : {&footage, &mouth})
        for (int r : *list)
            if (r < 0 || r >= n_references_)
                throw Error("PCM session: idle " + std::string(list == &footage ? "footage" : "mouth reference") + " frame " +
                            std::to_string(r) + " is not one of the " + std::to_string(n_references_) + " references");
    mouth_ = std::move(mouth);
    const Manifest& m = avatar_.manifest();
    voice_.reset(new VoiceActivity(m.vad, std::move(vad_engine), m.audio_model.sample_rate / m.audio.fps));
    stream_->set_lazy(true);  // the audio model runs only for windows a generated frame reads
    footage_ = std::move(footage);
    ramp_ = m.vad.ramp_frames;
}

int PcmSession::push(const float* samples, size_t n) {
    stream_->push(samples, n);
    // generator frame i reads feature frames up to i + window_after - 1
    int ready = stream_->frames() - (avatar_.manifest().audio.window_after - 1);
    if (voice_) {  // and the fade before frame i needs the decision on frame i + ramp
        voice_->push(samples, n);
        ready = std::min<long long>(ready, voice_->decided() - ramp_);
    }
    ready_ = std::max(ready_, ready);
    return pending();
}

int PcmSession::finish() {
    stream_->finish();
    if (voice_) voice_->flush(stream_->frames());
    ready_ = stream_->frames();
    return pending();
}

int PcmSession::next_reference() const {
    if (pending() <= 0) throw Error("PCM session: no frame is ready; push more audio (or finish)");
    if (!footage_.empty()) return footage_[static_cast<size_t>(pingpong_reference(static_cast<int>(footage_.size()), next_frame_))];
    return pingpong_reference(n_references_, next_frame_);
}

int PcmSession::next_mouth_reference() const {
    if (pending() <= 0) throw Error("PCM session: no frame is ready; push more audio (or finish)");
    if (mouth_.empty() || next_share() == 0) return -1;
    return mouth_[static_cast<size_t>(pingpong_reference(static_cast<int>(mouth_.size()), next_frame_))];
}

int PcmSession::next_share() const { return voice_ ? generated_share(next_frame_, *voice_, ramp_) : kBlendOne; }

Image PcmSession::render_next(const ReferenceFrame& reference, double load_ms, const ReferenceFrame* mouth) {
    if (pending() <= 0) throw Error("PCM session: no frame is ready; push more audio (or finish)");
    const int share = next_share();
    last_share_ = share;
    Image out;
    if (share == 0) {  // silence: the footage, no model runs
        out = reference.image;
    } else {
        // Frames < frames() exist; the window is zero-padded past the end only after finish().
        // the stream keeps feature frames from feature_base() on: the window is read relative to it
        const long long base = stream_->feature_base();
        const AudioConfig& a = avatar_.manifest().audio;
        stream_->compute(next_frame_ - a.window_before, next_frame_ + a.window_after);
        if (!mouth_.empty() && mouth == nullptr) throw Error("PCM session: this frame needs its mouth reference (next_mouth_reference())");
        out = avatar_.render(reference, stream_->features().data(), static_cast<int>(stream_->frames() - base),
                             static_cast<int>(next_frame_ - base), load_ms, mouth_.empty() ? nullptr : mouth);
        blend_into(out, reference.image, share);
        ++inferred_;
    }
    ++next_frame_;
    if (voice_) voice_->forget_before(next_frame_ - ramp_);
    stream_->forget_features_before(next_frame_ - avatar_.manifest().audio.window_before);
    return out;
}

std::vector<Image> PcmSession::render_pending(const ReferenceSource& references) {
    std::vector<Image> out;
    while (pending() > 0) {
        const int m = next_mouth_reference();
        if (m < 0) {
            out.push_back(render_next(references(next_reference())));
        } else {
            ReferenceFrame mouth = references(m);
            out.push_back(render_next(references(next_reference()), 0.0, &mouth));
        }
    }
    return out;
}

std::vector<Image> PcmSession::push_pcm(const float* samples, size_t n, const ReferenceSource& references) {
    push(samples, n);
    return render_pending(references);
}

std::vector<Image> PcmSession::finish(const ReferenceSource& references) {
    finish();
    return render_pending(references);
}

}  // namespace dhm
