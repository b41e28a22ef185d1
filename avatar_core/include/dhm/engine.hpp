// The inference engine behind one small interface: named float tensors in and out, as in
// dhm.runtime_py.engines. The apps use MnnEngine (mnn_engine.hpp); the core's own tests
// use ReplayEngine, which replays outputs recorded from the real MNN Python runtime.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dhm/manifest.hpp"

namespace dhm {

struct Tensor {
    std::vector<int> shape;
    std::vector<float> data;
};

using TensorMap = std::map<std::string, Tensor>;

class Engine {
public:
    virtual ~Engine() = default;
    virtual std::vector<TensorInfo> inputs() const = 0;
    virtual std::vector<TensorInfo> outputs() const = 0;
    virtual TensorMap run(const TensorMap& inputs) = 0;
    virtual std::string describe() const = 0;
};

// Refuse an engine whose inputs or outputs disagree with the manifest (names and shapes).
void check_engine(const Engine& engine, const Manifest& manifest);

// Replays recorded (input, output) pairs: run() finds the recorded input closest to the
// one given and returns its output, after checking the inputs agree within `tolerance`
// (1 LSB of an 8-bit pixel by default). For tests of everything around the engine.
class ReplayEngine : public Engine {
public:
    struct Record {
        TensorMap inputs, outputs;
    };
    ReplayEngine(const Manifest& manifest, std::vector<Record> records, float tolerance = 1.0f / 255.0f + 1e-6f);
    ReplayEngine(std::vector<TensorInfo> inputs, std::vector<TensorInfo> outputs, std::vector<Record> records, float tolerance);
    std::vector<TensorInfo> inputs() const override { return inputs_; }
    std::vector<TensorInfo> outputs() const override { return outputs_; }
    TensorMap run(const TensorMap& inputs) override;
    std::string describe() const override { return "replay of " + std::to_string(records_.size()) + " recorded MNN runs"; }

private:
    std::vector<TensorInfo> inputs_, outputs_;
    std::vector<Record> records_;
    float tolerance_;
};

// The voice detector's recorded scores (`dhm golden`'s idle_scores.f32), replayed hop by hop with
// its state passed on: a session's decisions then follow runtime_py's without MNN.
class ScoreReplayEngine : public Engine {
public:
    ScoreReplayEngine(const VadConfig& vad, std::vector<float> scores);
    std::vector<TensorInfo> inputs() const override { return {vad_.input, vad_.state}; }
    std::vector<TensorInfo> outputs() const override { return {{vad_.output, {1, 1}}, {vad_.state_out, vad_.state.shape}}; }
    TensorMap run(const TensorMap& inputs) override;
    std::string describe() const override { return "replay of " + std::to_string(scores_.size()) + " recorded voice scores"; }

private:
    VadConfig vad_;
    std::vector<float> scores_;
    size_t next_ = 0;
};

}  // namespace dhm
