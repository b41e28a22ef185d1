#include "dhm/mnn_engine.hpp"

#include <MNN/Interpreter.hpp>
#include <MNN/expr/Executor.hpp>
#include <MNN/expr/ExprCreator.hpp>
#include <MNN/expr/Module.hpp>

#include <cstring>

#include "dhm/error.hpp"

namespace dhm {
namespace {

using MNN::Express::Executor;
using MNN::Express::Module;
using MNN::Express::VARP;

MNNForwardType forward_type(const std::string& name) {
    if (name == "cpu") return MNN_FORWARD_CPU;
    if (name == "opencl") return MNN_FORWARD_OPENCL;
    if (name == "vulkan") return MNN_FORWARD_VULKAN;
    if (name == "metal") return MNN_FORWARD_METAL;
    throw Error("MNN backend '" + name + "': expected cpu, opencl, vulkan or metal");
}

class MnnEngine : public Engine {
public:
    MnnEngine(const std::string& path, const Manifest& m, const MnnOptions& o) : inputs_(m.inputs), outputs_(m.outputs), path_(path) {
        MNN::ScheduleConfig config;
        config.type = forward_type(o.backend);
        config.backupType = MNN_FORWARD_CPU;
        config.numThread = o.threads;
        MNN::BackendConfig backend;
        // Named explicitly: "normal" lets ARMv8.2 cores compute in fp16 behind our back.
        backend.precision = o.fp16 ? MNN::BackendConfig::Precision_Low : MNN::BackendConfig::Precision_High;
        config.backendConfig = &backend;
        runtime_.reset(Executor::RuntimeManager::createRuntimeManager(config));
        std::vector<std::string> in, out;
        for (const auto& t : inputs_) in.push_back(t.name);
        for (const auto& t : outputs_) out.push_back(t.name);
        module_.reset(Module::load(in, out, path.c_str(), runtime_));
        if (!module_) throw Error(path + ": MNN cannot load it");
    }

    std::vector<TensorInfo> inputs() const override {
        std::vector<TensorInfo> got;
        const Module::Info* info = module_->getInfo();
        for (size_t i = 0; i < info->inputNames.size() && i < info->inputs.size(); ++i)
            got.push_back({info->inputNames[i], info->inputs[i].dim});
        return got;
    }
    std::vector<TensorInfo> outputs() const override { return outputs_; }  // static shapes: the manifest's
    std::string describe() const override { return path_; }

    TensorMap run(const TensorMap& inputs) override {
        std::vector<VARP> args;
        for (const auto& t : inputs_) {
            const Tensor& src = inputs.at(t.name);
            VARP v = MNN::Express::_Input(t.shape, MNN::Express::NCHW, halide_type_of<float>());
            std::memcpy(v->writeMap<float>(), src.data.data(), src.data.size() * sizeof(float));
            args.push_back(v);
        }
        std::vector<VARP> results = module_->onForward(args);
        if (results.size() != outputs_.size()) throw Error(path_ + ": MNN forward failed");
        TensorMap out;
        for (size_t i = 0; i < outputs_.size(); ++i) {
            VARP v = MNN::Express::_Convert(results[i], MNN::Express::NCHW);
            const float* p = v->readMap<float>();
            Tensor& t = out[outputs_[i].name];
            t.shape = outputs_[i].shape;
            t.data.assign(p, p + element_count(t.shape));
        }
        return out;
    }

private:
    std::vector<TensorInfo> inputs_, outputs_;
    std::string path_;
    std::shared_ptr<Executor::RuntimeManager> runtime_;
    std::unique_ptr<Module> module_;
};

}  // namespace

std::unique_ptr<Engine> make_mnn_engine(const std::string& path, const Manifest& m, const MnnOptions& o) {
    return std::unique_ptr<Engine>(new MnnEngine(path, m, o));
}

}  // namespace dhm
