// A long stream through the core, built with the sanitizers (cmake -DDHM_SANITIZE=ON): PCM of
// tone bursts and silence, 20 ms chunks, through PcmSession resting the mouth in silence; then
// create/destroy cycles of AvatarSession + PcmSession. It checks the session's lifecycle and
// memory, not numerics (those are golden_test's and mnn_engine_test's), so the three models are
// stand-ins with the manifest's shapes: the generator and the audio model give constants, the
// voice detector says speech where the hop is loud. ASan/UBSan abort on a memory error, LSan
// reports leaks at exit; resident memory after warm-up must stay flat.
//
//   soak_test GOLDEN_DIR SECONDS CYCLES
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dhm/audio_stream.hpp"
#include "dhm/avatar.hpp"
#include "dhm/error.hpp"
#include "dhm/golden.hpp"

using namespace dhm;

namespace {

// Constant outputs of the given shapes.
class ConstantEngine : public Engine {
public:
    ConstantEngine(std::vector<TensorInfo> in, std::vector<TensorInfo> out, float value) : in_(std::move(in)), out_(std::move(out)), value_(value) {}
    std::vector<TensorInfo> inputs() const override { return in_; }
    std::vector<TensorInfo> outputs() const override { return out_; }
    TensorMap run(const TensorMap&) override {
        TensorMap out;
        for (const auto& t : out_) out[t.name] = Tensor{t.shape, std::vector<float>(element_count(t.shape), value_)};
        return out;
    }
    std::string describe() const override { return "constant engine"; }

private:
    std::vector<TensorInfo> in_, out_;
    float value_;
};

// The voice detector's stand-in: "speech" (1) where the hop's RMS is above 0.05, its state passed on.
class LevelEngine : public Engine {
public:
    explicit LevelEngine(const VadConfig& v) : v_(v) {}
    std::vector<TensorInfo> inputs() const override { return {v_.input, v_.state}; }
    std::vector<TensorInfo> outputs() const override { return {{v_.output, {1, 1}}, {v_.state_out, v_.state.shape}}; }
    TensorMap run(const TensorMap& in) override {
        const std::vector<float>& x = in.at(v_.input.name).data;
        double power = 0;
        for (float s : x) power += double(s) * s;
        TensorMap out;
        out[v_.output] = Tensor{{1, 1}, {std::sqrt(power / x.size()) > 0.05 ? 1.0f : 0.0f}};
        out[v_.state_out] = in.at(v_.state.name);
        return out;
    }
    std::string describe() const override { return "level engine"; }

private:
    const VadConfig& v_;
};

double resident_mb() {
    std::ifstream f("/proc/self/statm");
    long pages = 0, resident = 0;
    f >> pages >> resident;
    return resident * 4096.0 / (1 << 20);
}

// Tone bursts of 2-5 s and 0.5-3 s of silence, seeded, in 20 ms chunks.
std::vector<float> speech_and_silence(double seconds, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<float> pcm;
    const size_t total = static_cast<size_t>(seconds * 16000);
    bool loud = false;
    while (pcm.size() < total) {
        const double len = loud ? std::uniform_real_distribution<double>(2.0, 5.0)(rng) : std::uniform_real_distribution<double>(0.5, 3.0)(rng);
        for (size_t k = 0, n = static_cast<size_t>(len * 16000); k < n && pcm.size() < total; ++k)
            pcm.push_back(loud ? 0.3f * static_cast<float>(std::sin(2 * M_PI * 180.0 * k / 16000.0)) : 0.0f);
        loud = !loud;
    }
    return pcm;
}

struct Run {
    int frames = 0, inferred = 0;
};

Run stream(const Manifest& m, const ReferenceFrame& ref, int n_references, const float* pcm, size_t n) {
    AvatarSession avatar(m, std::unique_ptr<Engine>(new ConstantEngine(m.inputs, m.outputs, 0.5f)));
    PcmSession session(avatar, std::unique_ptr<Engine>(new ConstantEngine({m.audio_model.input}, {m.audio_model.output}, 0.1f)), n_references);
    std::vector<int> footage;
    for (int r = 0; r < std::min(n_references, 8); ++r) footage.push_back(r);
    session.rest_in_silence(std::unique_ptr<Engine>(new LevelEngine(m.vad)), footage);
    Run run;
    auto drain = [&] {
        while (session.pending() > 0) {
            session.next_reference();
            session.render_next(ref);
            ++run.frames;
        }
    };
    for (size_t start = 0; start < n; start += 320) {
        session.push(pcm + start, std::min<size_t>(320, n - start));
        drain();
    }
    session.finish();
    drain();
    run.inferred = session.frames_inferred();
    return run;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::printf("usage: soak_test GOLDEN_DIR SECONDS CYCLES\n");
        return 2;
    }
    const std::string dir = argv[1];
    const double seconds = std::atof(argv[2]);
    const int cycles = std::atoi(argv[3]);
    try {
        Manifest m = Manifest::load(dir + "/manifest.json");
        if (!m.audio_model.present || !m.vad.present) throw Error("the golden manifest has no audio model or no vad section");
        int n_references = 0;
        std::ifstream(dir + "/pcm_references.txt") >> n_references;
        std::ifstream cases(dir + "/cases.txt");
        int i0 = 0, r0 = 0;
        cases >> i0 >> r0;
        const std::string ref_name = dir + "/ref_" + std::to_string(r0);
        ReferenceFrame ref{read_u8(ref_name + ".u8"), parse_landmarks(read_text_file(ref_name + ".lms"))};

        // 1. the long stream, in pieces of 10 s of audio so resident memory can be sampled
        std::vector<float> pcm = speech_and_silence(seconds, 20261203);
        const double warm = std::max(10.0, seconds / 10);
        AvatarSession avatar(m, std::unique_ptr<Engine>(new ConstantEngine(m.inputs, m.outputs, 0.5f)));
        PcmSession session(avatar, std::unique_ptr<Engine>(new ConstantEngine({m.audio_model.input}, {m.audio_model.output}, 0.1f)),
                           n_references);
        std::vector<int> footage;
        for (int r = 0; r < std::min(n_references, 8); ++r) footage.push_back(r);
        session.rest_in_silence(std::unique_ptr<Engine>(new LevelEngine(m.vad)), footage);
        int frames = 0;
        double after_warm = -1, highest = 0;
        auto drain = [&] {
            while (session.pending() > 0) {
                session.next_reference();
                session.render_next(ref);
                ++frames;
            }
        };
        for (size_t start = 0; start < pcm.size(); start += 320) {
            session.push(pcm.data() + start, std::min<size_t>(320, pcm.size() - start));
            drain();
            if (start % 160000 == 0 && start / 16000.0 >= warm) {  // every 10 s of audio after warm-up
                const double now = resident_mb();
                if (after_warm < 0) after_warm = now;
                highest = std::max(highest, now);
            }
        }
        session.finish();
        drain();
        const long long expected = static_cast<long long>(pcm.size()) * m.audio.fps / 16000;
        const double rise = after_warm < 0 ? 0.0 : highest - after_warm;

        // 2. sessions opened, fed a second, dropped
        double settled = 0, last = 0;
        for (int c = 0; c < cycles; ++c) {
            Run r = stream(m, ref, n_references, pcm.data(), std::min<size_t>(pcm.size(), 16000));
            if (r.frames != m.audio.fps) throw Error("cycle: " + std::to_string(r.frames) + " frames from 1 s");
            last = resident_mb();
            if (c == std::min(9, cycles - 1)) settled = last;
        }
        std::printf("soak: %.0f s of audio, %d frames of %lld expected, %d painted by the generator, resident memory %.1f MB "
                    "after warm-up, rise %.1f MB; %d create/destroy cycles: %+.1f MB after the first 10\n",
                    seconds, frames, expected, session.frames_inferred(), after_warm, rise, cycles, last - settled);
        if (frames != expected || session.frames_inferred() <= 0 || session.frames_inferred() >= frames) {
            std::printf("FAIL: frames or inferences\n");
            return 1;
        }
        if (rise > 5.0 || last - settled > 5.0) {
            std::printf("FAIL: resident memory grew\n");
            return 1;
        }
    } catch (const Error& e) {
        std::printf("FAIL: %s\n", e.what());
        return 1;
    }
    std::printf("soak: OK\n");
    return 0;
}
