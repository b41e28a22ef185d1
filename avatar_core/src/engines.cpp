#include "dhm/engines.hpp"

#include <fstream>

#include "dhm/error.hpp"
#include "dhm/golden.hpp"
#ifdef DHM_WITH_MNN
#include "dhm/mnn_engine.hpp"
#endif

namespace dhm {

std::vector<ReplayEngine::Record> read_golden_records(const std::string& dir, const Manifest& m) {
    std::ifstream cases(dir + "/cases.txt");
    if (!cases) throw Error(dir + ": not a golden folder (no cases.txt)");
    std::vector<ReplayEngine::Record> records;
    int i, r;
    while (cases >> i >> r) {
        ReplayEngine::Record rec;
        for (const auto& t : m.inputs) rec.inputs[t.name] = read_f32(dir + "/" + t.name + "_" + std::to_string(i) + ".f32");
        for (const auto& t : m.outputs) rec.outputs[t.name] = read_f32(dir + "/" + t.name + "_" + std::to_string(i) + ".f32");
        records.push_back(std::move(rec));
    }
    return records;
}

std::unique_ptr<Engine> open_engine(const std::string& path, const Manifest& m, const EngineOptions& o) {
    if (std::ifstream(path + "/cases.txt")) return std::unique_ptr<Engine>(new ReplayEngine(m, read_golden_records(path, m)));
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

}  // namespace dhm
