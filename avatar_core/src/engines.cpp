#include "dhm/engines.hpp"

#include <fstream>

#include "dhm/error.hpp"
#include "dhm/golden.hpp"
#ifdef DHM_WITH_MNN
#include "dhm/mnn_engine.hpp"
#endif

namespace dhm {

std::vector<ReplayEngine::Record> read_golden_records(const std::string& dir, const Manifest& m, const std::string& prefix) {
    std::ifstream cases(dir + "/" + prefix + "cases.txt");
    if (!cases) throw Error(dir + ": not a golden folder (no " + prefix + "cases.txt)");
    std::vector<ReplayEngine::Record> records;
    int i, r;
    while (cases >> i >> r) {
        ReplayEngine::Record rec;
        for (const auto& t : m.inputs) rec.inputs[t.name] = read_f32(dir + "/" + prefix + t.name + "_" + std::to_string(i) + ".f32");
        for (const auto& t : m.outputs) rec.outputs[t.name] = read_f32(dir + "/" + prefix + t.name + "_" + std::to_string(i) + ".f32");
        records.push_back(std::move(rec));
    }
    return records;
}

std::vector<ReplayEngine::Record> read_golden_audio_records(const std::string& dir, const Manifest& m, const std::string& prefix) {
    const AudioModelConfig& am = m.audio_model;
    Tensor windows = read_f32(dir + "/" + prefix + "windows.f32"), rows = read_f32(dir + "/" + prefix + "rows.f32");
    const size_t in_size = element_count(am.input.shape), out_size = element_count(am.output.shape);
    if (windows.shape.empty() || rows.shape.empty() || windows.shape[0] != rows.shape[0] ||
        windows.data.size() != in_size * windows.shape[0] || rows.data.size() != out_size * rows.shape[0])
        throw Error(dir + ": " + prefix + "windows.f32 and " + prefix + "rows.f32 do not hold the audio model's runs");
    std::vector<ReplayEngine::Record> records(static_cast<size_t>(windows.shape[0]));
    for (size_t k = 0; k < records.size(); ++k) {
        Tensor& in = records[k].inputs[am.input.name];
        in.shape = am.input.shape;
        in.data.assign(windows.data.begin() + k * in_size, windows.data.begin() + (k + 1) * in_size);
        Tensor& out = records[k].outputs[am.output.name];
        out.shape = am.output.shape;
        out.data.assign(rows.data.begin() + k * out_size, rows.data.begin() + (k + 1) * out_size);
    }
    return records;
}

std::unique_ptr<Engine> open_engine(const std::string& path, const Manifest& m, const EngineOptions& o) {
    if (std::ifstream(path + "/cases.txt")) {
        // the feature-driven runs and, where recorded, the others
        std::vector<ReplayEngine::Record> records = read_golden_records(path, m);
        for (const char* prefix : {"pcm_", "idle_"})  // and the PCM-driven and idle sessions' runs
            if (std::ifstream(path + "/" + prefix + "cases.txt"))
                for (auto& r : read_golden_records(path, m, prefix)) records.push_back(std::move(r));
        return std::unique_ptr<Engine>(new ReplayEngine(m, std::move(records)));
    }
#ifdef DHM_WITH_MNN
    MnnOptions mo;
    mo.threads = o.threads;
    mo.fp16 = o.fp16;
    mo.backend = o.backend;
    return make_mnn_engine(path, m, mo);
#else
    (void)o;
    throw Error(path + ": this build of the dhm core has no MNN engine (configure with DHM_WITH_MNN=ON)");
#endif
}

std::unique_ptr<Engine> open_audio_engine(const std::string& path, const Manifest& m, int threads) {
    const AudioModelConfig& am = m.audio_model;
    if (!am.present)
        throw Error("manifest: no audio model; export the generator with `dhm export` from a checkpoint trained on dhm features");
    if (std::ifstream(path + "/pcm_windows.f32")) {
        std::vector<ReplayEngine::Record> records = read_golden_audio_records(path, m);
        if (std::ifstream(path + "/idle_windows.f32"))
            for (auto& r : read_golden_audio_records(path, m, "idle_")) records.push_back(std::move(r));
        return std::unique_ptr<Engine>(new ReplayEngine({am.input}, {am.output}, std::move(records), 0.0f));
    }
#ifdef DHM_WITH_MNN
    MnnOptions mo;
    mo.threads = threads;
    mo.fp16 = false;
    return make_mnn_engine(path, {am.input}, {am.output}, mo);
#else
    (void)threads;
    throw Error(path + ": this build of the dhm core has no MNN engine (configure with DHM_WITH_MNN=ON)");
#endif
}

std::unique_ptr<Engine> open_vad_engine(const std::string& path, const Manifest& m) {
    const VadConfig& v = m.vad;
    if (!v.present) throw Error("manifest: no vad section; export again with `dhm export` to ship the voice detector");
    if (std::ifstream(path + "/idle_scores.f32")) return std::unique_ptr<Engine>(new ScoreReplayEngine(v, read_f32(path + "/idle_scores.f32").data));
#ifdef DHM_WITH_MNN
    MnnOptions mo;
    mo.threads = 1;
    mo.fp16 = false;
    return make_mnn_engine(path, {v.input, v.state}, {{v.output, {1, 1}}, {v.state_out, v.state.shape}}, mo);
#else
    throw Error(path + ": this build of the dhm core has no MNN engine (configure with DHM_WITH_MNN=ON)");
#endif
}

}  // namespace dhm
