// The MNN engine (src/mnn_engine.cpp) against a real model: built only with DHM_WITH_MNN.
//
//   mnn_engine_test GOLDEN_DIR MODEL.mnn     exit 0 when every check holds; prints the figures
//
// GOLDEN_DIR is `dhm golden MODEL.mnn … --threads 1`: the network inputs and the outputs the
// MNN Python runtime computed from them, so the C++ engine (1 thread, precision high) must
// reproduce them bit for bit. Then the checks the engine owes the core: a manifest whose
// output or input shape disagrees with the model is refused at load, and inputs of the
// wrong size are refused before anything is copied.
#include <cmath>
#include <cstdio>
#include <string>

#include <fstream>

#include "dhm/audio_stream.hpp"
#include "dhm/engines.hpp"
#include "dhm/golden.hpp"
#include "dhm/error.hpp"
#include "dhm/manifest.hpp"
#include "dhm/mnn_engine.hpp"
#include "check.hpp"

using namespace dhm;

static bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: mnn_engine_test GOLDEN_DIR MODEL.mnn\n");
        return 2;
    }
    const std::string dir = argv[1], model = argv[2];
    try {
        const std::string text = read_text_file(dir + "/manifest.json");
        const Manifest m = Manifest::parse(text);
        MnnOptions one;
        one.threads = 1;
        std::unique_ptr<Engine> engine = make_mnn_engine(model, m, one);
        check_engine(*engine, m);

        // 1. the recorded runs, bit for bit
        double worst = 0;
        size_t values = 0;
        const auto records = read_golden_records(dir, m);
        for (const auto& rec : records) {
            TensorMap out = engine->run(rec.inputs);
            for (const auto& [name, want] : rec.outputs) {
                const Tensor& got = out.at(name);
                EXPECT(got.shape == want.shape, "output %s: shape %s, recorded %s", name.c_str(), shape_str(got.shape).c_str(),
                       shape_str(want.shape).c_str());
                if (got.data.size() != want.data.size()) continue;
                for (size_t k = 0; k < got.data.size(); ++k) worst = std::max(worst, std::fabs(double(got.data[k]) - want.data[k]));
                values += got.data.size();
            }
        }
        EXPECT(!records.empty(), "no recorded runs in %s", dir.c_str());
        EXPECT(worst == 0.0, "C++ MNN engine differs from the Python runtime by %g", worst);
        std::printf("%zu recorded runs, %zu output values: max abs %g against dhm.runtime_py (MNN, 1 thread)\n", records.size(),
                    values, worst);

        // 2. a manifest whose output (then input) shape is not the model's: refused at load
        const TensorInfo& out0 = m.outputs.at(0);
        Manifest wrong_out = m;
        wrong_out.outputs[0].shape.back() += 1;
        std::string e = error_of([&] { check_engine(*make_mnn_engine(model, wrong_out, one), wrong_out); });
        EXPECT(contains(e, "output '" + out0.name + "'") && contains(e, "the manifest says"), "larger output shape: got '%s'",
               e.c_str());
        std::printf("manifest output %s vs the model's %s: %s\n", shape_str(wrong_out.outputs[0].shape).c_str(),
                    shape_str(out0.shape).c_str(), e.c_str());

        // 3. inputs of the wrong size never reach a memcpy
        TensorMap short_input = records.at(0).inputs;
        Tensor& face = short_input.at(m.face_input().name);
        face.data.resize(face.data.size() / 2);
        e = error_of([&] { engine->run(short_input); });
        EXPECT(contains(e, "input '" + m.face_input().name + "' holds"), "short input: got '%s'", e.c_str());
        TensorMap missing = records.at(0).inputs;
        missing.erase(m.face_input().name);
        e = error_of([&] { engine->run(missing); });
        EXPECT(contains(e, "missing input"), "missing input: got '%s'", e.c_str());

        // 4. PCM in, frames out with both models on MNN: the audio model beside MODEL.mnn
        // (the manifest's mnn file) computes the features runtime_py's PcmSession recorded.
        if (m.audio_model.present && std::ifstream(dir + "/pcm.f32")) {
            const std::string folder = model.substr(0, model.find_last_of('/') + 1);
            const std::string audio_path = folder + m.audio_model.file_for("mnn");
            AvatarSession avatar(m, make_mnn_engine(model, m, one));
            int n_references = 0;
            std::ifstream(dir + "/pcm_references.txt") >> n_references;
            PcmSession session(avatar, open_audio_engine(audio_path, m, 1), n_references);
            session.keep_history(true);  // every feature frame, to compare with the recorded ones
            Tensor pcm = read_f32(dir + "/pcm.f32");
            ReferenceSource refs = [&](int r) {
                return ReferenceFrame{read_u8(dir + "/ref_" + std::to_string(r) + ".u8"),
                                      parse_landmarks(read_text_file(dir + "/ref_" + std::to_string(r) + ".lms"))};
            };
            std::vector<Image> frames;
            for (size_t start = 0; start < pcm.data.size(); start += 320)
                for (Image& f : session.push_pcm(pcm.data.data() + start, std::min<size_t>(320, pcm.data.size() - start), refs))
                    frames.push_back(std::move(f));
            for (Image& f : session.finish(refs)) frames.push_back(std::move(f));
            Tensor want = read_f32(dir + "/pcm_features.f32");
            double feat = 0;
            const auto& got = session.stream().features();
            EXPECT(got.size() == want.data.size(), "PCM features: %zu values, recorded %zu", got.size(), want.data.size());
            for (size_t k = 0; k < std::min(got.size(), want.data.size()); ++k) feat = std::max(feat, std::fabs(double(got[k]) - want.data[k]));
            int lsb = 0;
            for (size_t i = 0; i < frames.size(); ++i) {
                Image ref = read_u8(dir + "/pcm_pasted_" + std::to_string(i) + ".u8");
                for (size_t k = 0; k < ref.data.size() && k < frames[i].data.size(); ++k)
                    lsb = std::max(lsb, std::abs(int(frames[i].data[k]) - int(ref.data[k])));
            }
            EXPECT(feat <= 1e-4 && lsb <= 1, "PCM with MNN: features %g, frames %d LSB", feat, lsb);
            std::printf("pcm with MNN (%s + %s): %zu frames, features max abs %g, frames max %d LSB vs dhm.runtime_py\n",
                        model.c_str(), audio_path.c_str(), frames.size(), feat, lsb);
        }
        // 5. the mouth at rest: speech with silence around it, the export's voice detector on MNN,
        // footage in silence, fades around speech, as runtime_py's PcmSession with idle frames.
        if (m.vad.present && m.audio_model.present && std::ifstream(dir + "/idle_pcm.f32")) {
            const std::string folder = model.substr(0, model.find_last_of('/') + 1);
            AvatarSession avatar(m, make_mnn_engine(model, m, one));
            int n_references = 0;
            std::ifstream(dir + "/pcm_references.txt") >> n_references;
            PcmSession session(avatar, open_audio_engine(folder + m.audio_model.file_for("mnn"), m, 1), n_references);
            const std::vector<int> footage = golden_ints(dir + "/idle_footage.txt"), want_shares = golden_ints(dir + "/idle_shares.txt"),
                                   mouth = golden_ints(dir + "/idle_mouth.txt");
            session.rest_in_silence(open_vad_engine(folder + m.vad.file_for("mnn"), m), footage, mouth);
            session.voice_mut()->keep_scores(true);
            Tensor pcm = read_f32(dir + "/idle_pcm.f32");
            std::vector<int> shares;
            int lsb = 0;
            auto drain = [&] {
                while (session.pending() > 0) {
                    const int i = session.frames_rendered();
                    shares.push_back(session.next_share());
                    Image got = render_golden_next(session, dir);
                    Image want = read_u8(dir + "/idle_pasted_" + std::to_string(i) + ".u8");
                    for (size_t k = 0; k < want.data.size() && k < got.data.size(); ++k)
                        lsb = std::max(lsb, std::abs(int(got.data[k]) - int(want.data[k])));
                }
            };
            for (size_t start = 0; start < pcm.data.size(); start += 320) {
                session.push(pcm.data.data() + start, std::min<size_t>(320, pcm.data.size() - start));
                drain();
            }
            session.finish();
            drain();
            Tensor want_scores = read_f32(dir + "/idle_scores.f32");
            const auto& scores = session.voice()->scores();
            double score_diff = scores.size() == want_scores.data.size() ? 0.0 : 1.0;
            for (size_t k = 0; k < std::min(scores.size(), want_scores.data.size()); ++k)
                score_diff = std::max(score_diff, std::fabs(double(scores[k]) - want_scores.data[k]));
            int silent = 0;
            for (int v : shares) silent += v == 0;
            EXPECT(shares == want_shares && lsb <= 1 && score_diff <= 1e-5,
                   "idle frames: %zu shares (recorded %zu, equal: %d), frames %d LSB, scores %g", shares.size(), want_shares.size(),
                   int(shares == want_shares), lsb, score_diff);
            EXPECT(silent > 0 && session.frames_inferred() == int(shares.size()) - silent, "idle frames: %d silent, %d inferred of %zu",
                   silent, session.frames_inferred(), shares.size());
            const long long want_calls = read_f32(dir + "/idle_windows.f32").shape.at(0);
            EXPECT(session.stream().calls_run() == want_calls, "idle frames: the audio model ran %lld times, runtime_py %lld",
                   session.stream().calls_run(), want_calls);
            std::printf("idle with MNN (%s): %zu frames, %d in silence without a model, shares as recorded, frames max %d LSB, "
                        "voice scores max abs %g vs dhm.runtime_py\n",
                        m.vad.file_for("mnn").c_str(), shares.size(), silent, lsb, score_diff);
        }
    } catch (const Error& e) {
        std::printf("FAIL: %s\n", e.what());
        return 1;
    }
    if (failures) {
        std::printf("%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("mnn engine: all checks passed\n");
    return 0;
}
