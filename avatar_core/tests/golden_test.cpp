// The core against golden vectors from dhm.runtime_py (`dhm golden`): from the same frame,
// landmarks and features the core must build the same network inputs and, with the
// engine's recorded outputs replayed (ReplayEngine: outputs recorded from the real MNN
// Python runtime), paste the same frame: bit-exact or within 1 LSB.
//
//   golden_test GOLDEN_DIR        exit 0 when every case holds; prints the figures
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "dhm/audio_stream.hpp"
#include "dhm/avatar.hpp"
#include "dhm/engines.hpp"
#include "dhm/error.hpp"
#include "dhm/golden.hpp"
#include "dhm/schedule.hpp"
#include "check.hpp"

using namespace dhm;

struct Compare {
    double max_abs = 0;
    size_t differing = 0, total = 0;
};

static Compare compare(const std::vector<float>& a, const std::vector<float>& b) {
    Compare c;
    c.total = a.size();
    if (a.size() != b.size()) return {1e9, a.size(), a.size()};
    for (size_t i = 0; i < a.size(); ++i) {
        double d = std::fabs(static_cast<double>(a[i]) - b[i]);
        if (d > 0) ++c.differing;
        if (d > c.max_abs) c.max_abs = d;
    }
    return c;
}

static Compare compare(const Image& a, const Image& b) {
    Compare c;
    c.total = a.data.size();
    if (a.width != b.width || a.height != b.height || a.data.size() != b.data.size()) return {1e9, c.total, c.total};
    for (size_t i = 0; i < a.data.size(); ++i) {
        int d = std::abs(static_cast<int>(a.data[i]) - b.data[i]);
        if (d > 0) ++c.differing;
        if (d > c.max_abs) c.max_abs = d;
    }
    return c;
}

static void test_manifest_checks(const std::string& text) {
    EXPECT(error_of([&] { Manifest::parse(text); }).empty(), "the golden manifest must parse");
    // Replaces the first `from` after `after` (the generator section repeats some keys).
    auto replaced = [&](const std::string& from, const std::string& to, const std::string& after = "") {
        std::string t = text;
        size_t at = t.find(from, after.empty() ? 0 : t.find(after));
        if (at != std::string::npos) t.replace(at, from.size(), to);
        return t;
    };
    std::string e = error_of([&] { Manifest::parse(replaced("dhm.manifest/1", "dhm.manifest/9")); });
    EXPECT(e.find("schema 'dhm.manifest/9'") != std::string::npos, "wrong schema: got '%s'", e.c_str());
    for (const char* from : {"\"crop_interpolation\": \"linear\"", "\"crop_interpolation\": \"area\""}) {
        if (text.find(from) == std::string::npos) continue;
        e = error_of([&] { Manifest::parse(replaced(from, "\"crop_interpolation\": \"nearest\"", "\"preprocess\"")); });
        EXPECT(e.find("crop_interpolation 'nearest' is not supported") != std::string::npos, "interpolation: got '%s'", e.c_str());
    }
    e = error_of([&] { Manifest::parse(replaced("\"crop_size\": 168", "\"crop_size\": 170")); });
    EXPECT(e.find("crop_size must equal") != std::string::npos, "crop size: got '%s'", e.c_str());
    e = error_of([&] { Manifest::parse(text.substr(0, text.size() / 2)); });
    EXPECT(e.find("manifest JSON") != std::string::npos, "truncated: got '%s'", e.c_str());
}

static void test_schedule() {
    const std::vector<int> want = {1, 2, 3, 2, 1, 0, 1, 2, 3, 2};  // Ultralight's inference order
    EXPECT(pingpong(4, 10) == want, "ping-pong order");
    EXPECT(pingpong(1, 3) == std::vector<int>({0, 0, 0}), "single frame");
}

// PCM in, frames out: the core's PcmSession against runtime_py's, with the audio model's
// and the generator's recorded runs replayed. Chunkings of 1 sample, 97, 320 and the
// whole utterance must give the same features (exactly: the rows are replayed) and frames.
static void test_pcm_stream(const std::string& dir, const Manifest& m) {
    std::ifstream probe(dir + "/pcm_cases.txt");
    if (!probe) {
        std::printf("pcm: no audio model in this golden folder\n");
        return;
    }
    Tensor pcm = read_f32(dir + "/pcm.f32");
    Tensor want_features = read_f32(dir + "/pcm_features.f32");
    std::vector<ReplayEngine::Record> audio = read_golden_audio_records(dir, m);
    std::vector<ReplayEngine::Record> generator = read_golden_records(dir, m, "pcm_");
    std::vector<std::pair<int, int>> cases;
    {
        std::ifstream in(dir + "/pcm_cases.txt");
        int i, r;
        while (in >> i >> r) cases.push_back({i, r});
    }
    EXPECT(!cases.empty(), "pcm: no cases");
    int n_references = 0;
    std::ifstream(dir + "/pcm_references.txt") >> n_references;
    double worst_frame = 0, lookahead = 0;
    for (size_t chunk : {size_t(1), size_t(97), size_t(320), pcm.data.size()}) {
        AvatarSession avatar(m, std::unique_ptr<Engine>(new ReplayEngine(m, generator)));
        std::unique_ptr<Engine> audio_engine(new ReplayEngine({m.audio_model.input}, {m.audio_model.output}, audio, 0.0f));
        ReferenceSource refs = [&](int r) {
            return ReferenceFrame{read_u8(dir + "/ref_" + std::to_string(r) + ".u8"),
                                  parse_landmarks(read_text_file(dir + "/ref_" + std::to_string(r) + ".lms"))};
        };
        PcmSession session(avatar, std::move(audio_engine), n_references);
        // 20 ms chunks as an app streams: only what later windows read is kept; the others keep it all
        const bool streaming = chunk == 320;
        session.keep_history(!streaming);
        std::vector<Image> frames;
        for (size_t start = 0; start < pcm.data.size(); start += chunk)
            for (Image& f : session.push_pcm(pcm.data.data() + start, std::min(chunk, pcm.data.size() - start), refs))
                frames.push_back(std::move(f));
        for (Image& f : session.finish(refs)) frames.push_back(std::move(f));
        const size_t per_frame = static_cast<size_t>(m.audio.per_frame_size());
        if (streaming) {
            EXPECT(session.stream().features().size() <= per_frame * (m.audio.window_frames() + 1) && session.stream().feature_base() > 0,
                   "pcm chunk 320: the stream kept %zu feature frames", session.stream().features().size() / per_frame);
        } else {
            Compare fc = compare(session.stream().features(), want_features.data);
            EXPECT(fc.max_abs <= 1e-4, "pcm chunk %zu: features differ by %g", chunk, fc.max_abs);
        }
        EXPECT(frames.size() == cases.size(), "pcm chunk %zu: %zu frames, runtime_py rendered %zu", chunk, frames.size(), cases.size());
        for (size_t i = 0; i < std::min(frames.size(), cases.size()); ++i) {
            Compare c = compare(frames[i], read_u8(dir + "/pcm_pasted_" + std::to_string(i) + ".u8"));
            EXPECT(c.max_abs <= 1, "pcm chunk %zu frame %zu: differs by %g LSB", chunk, i, c.max_abs);
            worst_frame = std::max(worst_frame, c.max_abs);
        }
        lookahead = session.lookahead_ms();
        std::string e = error_of([&] { session.push(pcm.data.data(), 1); });
        EXPECT(e.find("after finish") != std::string::npos, "push after finish: got '%s'", e.c_str());
    }
    std::printf("pcm: %zu samples -> %zu frames for chunks of 1, 97, 320 and all; frames max %g LSB; lookahead %.0f ms\n",
                pcm.data.size(), cases.size(), worst_frame, lookahead);
}

// Speech with silence around it, resting the mouth: runtime_py's decisions (the detector's
// scores replayed), frames and model runs. In silence no model runs: the audio model may only
// run the windows runtime_py ran (a replay finds no other) and as many of them.
static void test_idle_stream(const std::string& dir, const Manifest& m) {
    if (!m.vad.present || !std::ifstream(dir + "/idle_cases.txt")) {
        std::printf("idle: no voice detector in this golden folder\n");
        return;
    }
    std::vector<ReplayEngine::Record> audio = read_golden_audio_records(dir, m, "idle_");
    AvatarSession avatar(m, std::unique_ptr<Engine>(new ReplayEngine(m, read_golden_records(dir, m, "idle_"))));
    int n_references = 0;
    std::ifstream(dir + "/pcm_references.txt") >> n_references;
    PcmSession session(avatar, std::unique_ptr<Engine>(new ReplayEngine({m.audio_model.input}, {m.audio_model.output}, audio, 0.0f)),
                       n_references);
    const std::vector<int> footage = golden_ints(dir + "/idle_footage.txt"), want_shares = golden_ints(dir + "/idle_shares.txt"),
                           mouth = golden_ints(dir + "/idle_mouth.txt");
    std::vector<int> shares;
    session.rest_in_silence(open_vad_engine(dir, m), footage, mouth);
    Tensor pcm = read_f32(dir + "/idle_pcm.f32");
    double worst = 0;
    int silent = 0, audio_in_silence = 0;
    auto drain = [&] {
        while (session.pending() > 0) {
            const int i = session.frames_rendered();
            shares.push_back(session.next_share());
            const long long calls = session.stream().calls_run();
            Image got = render_golden_next(session, dir);
            if (shares.back() == 0) ++silent, audio_in_silence += int(session.stream().calls_run() - calls);
            Compare c = compare(got, read_u8(dir + "/idle_pasted_" + std::to_string(i) + ".u8"));
            worst = std::max(worst, c.max_abs);
        }
    };
    for (size_t start = 0; start < pcm.data.size(); start += 320) {
        session.push(pcm.data.data() + start, std::min<size_t>(320, pcm.data.size() - start));
        drain();
    }
    session.finish();
    drain();
    EXPECT(shares == want_shares, "idle: %zu shares, runtime_py decided %zu (equal: %d)", shares.size(), want_shares.size(),
           int(shares == want_shares));
    EXPECT(worst <= 1, "idle: frames differ by %g LSB", worst);
    EXPECT(silent > 0 && session.frames_inferred() == int(shares.size()) - silent, "idle: %d silent, %d inferred of %zu", silent,
           session.frames_inferred(), shares.size());
    EXPECT(session.stream().calls_run() == static_cast<long long>(audio.size()) && audio_in_silence == 0,
           "idle: the audio model ran %lld times (runtime_py %zu), %d in silent frames", session.stream().calls_run(), audio.size(),
           audio_in_silence);
    std::printf("idle: %zu frames, %d footage without a model, %d generated; audio model %lld of %lld windows (as runtime_py); "
                "frames max %g LSB\n",
                shares.size(), silent, session.frames_inferred(), session.stream().calls_run(), session.stream().calls_ready(), worst);
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: golden_test GOLDEN_DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    try {
        const std::string manifest_text = read_text_file(dir + "/manifest.json");
        Manifest m = Manifest::parse(manifest_text);
        test_manifest_checks(manifest_text);
        test_schedule();
        test_pcm_stream(dir, m);
        test_idle_stream(dir, m);

        Tensor features = read_f32(dir + "/features.f32");
        const int n_feat = features.shape.at(0);
        std::vector<std::pair<int, int>> cases;
        {
            std::ifstream in(dir + "/cases.txt");
            int i, r;
            while (in >> i >> r) cases.push_back({i, r});
        }
        EXPECT(!cases.empty(), "no cases");

        // The replay engine gets the recorded runs; the session checks it against the manifest.
        std::vector<ReplayEngine::Record> records = read_golden_records(dir, m);
        AvatarSession session(m, std::unique_ptr<Engine>(new ReplayEngine(m, records)));

        int min_side = 1 << 30, max_side = 0;
        double worst_face = 0, worst_frame = 0;
        size_t face_diff = 0, face_total = 0, frame_diff = 0, frame_total = 0;
        for (auto [i, r] : cases) {
            ReferenceFrame ref{read_u8(dir + "/ref_" + std::to_string(r) + ".u8"),
                               parse_landmarks(read_text_file(dir + "/ref_" + std::to_string(r) + ".lms"))};
            CropBox box{};
            TensorMap in = session.prepare(ref, features.data.data(), n_feat, i, nullptr, &box);
            min_side = std::min(min_side, box.side());
            max_side = std::max(max_side, box.side());
            for (const auto& t : m.inputs) {
                Tensor want = read_f32(dir + "/" + t.name + "_" + std::to_string(i) + ".f32");
                Compare c = compare(in.at(t.name).data, want.data);
                EXPECT(in.at(t.name).shape == want.shape, "case %d: %s shape", i, t.name.c_str());
                if (t.name == m.face_input().name) {
                    // within 1 LSB of an 8-bit pixel
                    EXPECT(c.max_abs <= 1.0 / 255.0 + 1e-6, "case %d: face input differs by %.6f (> 1 LSB)", i, c.max_abs);
                    worst_face = std::max(worst_face, c.max_abs);
                    face_diff += c.differing;
                    face_total += c.total;
                } else {
                    EXPECT(c.max_abs == 0, "case %d: audio window differs by %g (must be exact)", i, c.max_abs);
                }
            }
            Image frame = session.render(ref, features.data.data(), n_feat, i);
            Compare c = compare(frame, read_u8(dir + "/pasted_" + std::to_string(i) + ".u8"));
            EXPECT(c.max_abs <= 1, "case %d: pasted frame differs by %g LSB (> 1)", i, c.max_abs);
            worst_frame = std::max(worst_frame, c.max_abs);
            frame_diff += c.differing;
            frame_total += c.total;
        }
        const StageTimes& t = session.times();
        std::printf("golden cases: %zu\n", cases.size());
        std::printf("crop filter: %s; crop boxes %d..%d px; audio window %d frames\n",
                    m.preprocess.crop_interpolation == Interpolation::Area ? "area" : "linear", min_side, max_side,
                    m.audio.window_frames());
        std::printf("face input: max abs %.6f, %.4f%% of values differ\n", worst_face, 100.0 * face_diff / std::max<size_t>(1, face_total));
        std::printf("pasted frame: max %g LSB, %.4f%% of bytes differ\n", worst_frame, 100.0 * frame_diff / std::max<size_t>(1, frame_total));
        std::printf("per frame: crop %.3f ms, pack %.3f ms, paste %.3f ms\n", t.per_frame_ms(1), t.per_frame_ms(2), t.per_frame_ms(4));

        // An engine that disagrees with the manifest is refused.
        Manifest other = m;
        other.inputs[1].shape.back() += 1;
        std::string e = error_of([&] { AvatarSession bad(m, std::unique_ptr<Engine>(new ReplayEngine(other, records))); });
        EXPECT(e.find("the manifest says") != std::string::npos, "engine/manifest mismatch: got '%s'", e.c_str());
    } catch (const Error& e) {
        std::printf("FAIL: %s\n", e.what());
        return 1;
    }
    std::printf(failures ? "FAILED (%d)\n" : "OK\n", failures);
    return failures ? 1 : 0;
}
