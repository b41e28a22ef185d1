// MNN behind the Engine interface: model load, one forward pass, tensor copies. Compiled
// only where MNN's headers and libraries are given (DHM_WITH_MNN, in the app builds).
#pragma once

#include <memory>
#include <string>

#include "dhm/engine.hpp"

namespace dhm {

struct MnnOptions {
    int threads = 2;
    bool fp16 = false;       // MNN precision "low" (fp16 on ARMv8.2 phones); otherwise "high"
    std::string backend = "cpu";  // cpu, opencl, vulkan, metal
};

std::unique_ptr<Engine> make_mnn_engine(const std::string& model_path, const Manifest& manifest, const MnnOptions& options);
// Any model with the given I/O (the manifest's audio model).
std::unique_ptr<Engine> make_mnn_engine(const std::string& model_path, const std::vector<TensorInfo>& inputs,
                                        const std::vector<TensorInfo>& outputs, const MnnOptions& options);

}  // namespace dhm
