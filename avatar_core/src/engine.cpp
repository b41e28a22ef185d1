#include "dhm/engine.hpp"

#include <cmath>
#include <limits>

#include "dhm/error.hpp"

namespace dhm {

void check_engine(const Engine& engine, const Manifest& m) {
    auto check = [&](const std::vector<TensorInfo>& got, const std::vector<TensorInfo>& want, const char* what) {
        for (const auto& w : want) {
            bool found = false;
            for (const auto& g : got) {
                if (g.name != w.name) continue;
                found = true;
                if (g.shape != w.shape)
                    throw Error(engine.describe() + ": " + what + " '" + w.name + "' is " + shape_str(g.shape) + ", the manifest says " + shape_str(w.shape));
            }
            if (!found) throw Error(engine.describe() + ": no " + what + " named '" + w.name + "' (the manifest's)");
        }
    };
    check(engine.inputs(), m.inputs, "input");
    check(engine.outputs(), m.outputs, "output");
}

ReplayEngine::ReplayEngine(const Manifest& m, std::vector<Record> records, float tolerance)
    : inputs_(m.inputs), outputs_(m.outputs), records_(std::move(records)), tolerance_(tolerance) {
    if (records_.empty()) throw Error("replay engine: no recorded runs");
}

ReplayEngine::ReplayEngine(std::vector<TensorInfo> inputs, std::vector<TensorInfo> outputs, std::vector<Record> records, float tolerance)
    : inputs_(std::move(inputs)), outputs_(std::move(outputs)), records_(std::move(records)), tolerance_(tolerance) {
    if (records_.empty()) throw Error("replay engine: no recorded runs");
}

TensorMap ReplayEngine::run(const TensorMap& inputs) {
    float best = std::numeric_limits<float>::infinity();
    const Record* match = nullptr;
    for (const auto& r : records_) {
        float worst = 0.f;
        for (const auto& info : inputs_) {
            auto a = inputs.find(info.name);
            auto b = r.inputs.find(info.name);
            if (a == inputs.end()) throw Error("replay engine: missing input '" + info.name + "'");
            if (b == r.inputs.end() || a->second.data.size() != b->second.data.size()) {
                worst = std::numeric_limits<float>::infinity();
                break;
            }
            for (size_t i = 0; i < a->second.data.size(); ++i) worst = std::max(worst, std::fabs(a->second.data[i] - b->second.data[i]));
        }
        if (worst < best) best = worst, match = &r;
    }
    if (match == nullptr || best > tolerance_)
        throw Error("replay engine: no recorded run has these inputs (closest differs by " + std::to_string(best) + ")");
    return match->outputs;
}

ScoreReplayEngine::ScoreReplayEngine(const VadConfig& vad, std::vector<float> scores) : vad_(vad), scores_(std::move(scores)) {
    if (scores_.empty()) throw Error("score replay: no recorded voice scores");
}

TensorMap ScoreReplayEngine::run(const TensorMap& in) {
    if (next_ >= scores_.size()) throw Error("score replay: more hops than runtime_py scored (" + std::to_string(scores_.size()) + ")");
    auto state = in.find(vad_.state.name);
    if (state == in.end()) throw Error("score replay: missing input '" + vad_.state.name + "'");
    TensorMap out;
    out[vad_.output] = Tensor{{1, 1}, {scores_[next_++]}};
    out[vad_.state_out] = state->second;
    return out;
}

}  // namespace dhm
