// Choosing the engine for a model path: MNN when the core is built with it; without MNN
// (host builds of the JNI glue and the Objective-C++ bridge, for their tests) a folder of
// golden vectors is replayed (ReplayEngine), and anything else is refused clearly.
#pragma once

#include <memory>
#include <string>

#include "dhm/engine.hpp"

namespace dhm {

struct EngineOptions {
    int threads = 2;
    bool fp16 = false;
    std::string backend = "cpu";
};

std::unique_ptr<Engine> open_engine(const std::string& model_path, const Manifest& manifest, const EngineOptions& options);
// The manifest's audio model: MNN at fp32 (its log needs float32), or a golden folder's
// recorded audio-model runs replayed (host builds).
std::unique_ptr<Engine> open_audio_engine(const std::string& model_path, const Manifest& manifest, int threads);
// The manifest's voice detector (silero-vad, `vad`): MNN at fp32, one thread; a golden folder
// (idle_scores.f32) replays runtime_py's scores.
std::unique_ptr<Engine> open_vad_engine(const std::string& model_path, const Manifest& manifest);

// The recorded runs of a golden folder (`dhm golden`), for a ReplayEngine: the cases of
// <prefix>cases.txt, tensors <prefix><name>_<i>.f32 ("pcm_" for the PCM-driven frames).
std::vector<ReplayEngine::Record> read_golden_records(const std::string& dir, const Manifest& manifest, const std::string& prefix = "");
// The audio model's recorded runs (<prefix>windows.f32 -> <prefix>rows.f32), for a ReplayEngine.
std::vector<ReplayEngine::Record> read_golden_audio_records(const std::string& dir, const Manifest& manifest,
                                                            const std::string& prefix = "pcm_");

}  // namespace dhm
