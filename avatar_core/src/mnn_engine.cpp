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

// Elements of a shape, refusing negative (unknown) dimensions.
size_t checked_count(const std::vector<int>& shape, const std::string& what) {
    size_t n = 1;
    for (int d : shape) {
        if (d <= 0) throw Error(what + " has shape " + shape_str(shape) + ": expected positive, static dimensions");
        n *= static_cast<size_t>(d);
    }
    return n;
}

class MnnEngine : public Engine {
public:
    MnnEngine(const std::string& path, const std::vector<TensorInfo>& inputs, const std::vector<TensorInfo>& outputs, const MnnOptions& o)
        : inputs_(inputs), outputs_(outputs), path_(path) {
        MNN::ScheduleConfig config;
        config.type = forward_type(o.backend);
        config.backupType = MNN_FORWARD_CPU;
        config.numThread = o.threads;
        MNN::BackendConfig backend;
        // Named explicitly: "normal" lets ARMv8.2 cores compute in fp16 behind our back.
        backend.precision = o.fp16 ? MNN::BackendConfig::Precision_Low : MNN::BackendConfig::Precision_High;
        config.backendConfig = &backend;
        runtime_.reset(Executor::RuntimeManager::createRuntimeManager(config));
        if (!runtime_) throw Error(path + ": MNN cannot create a runtime for backend '" + o.backend + "'");
        std::vector<std::string> in, out;
        for (const auto& t : inputs_) in.push_back(t.name);
        for (const auto& t : outputs_) out.push_back(t.name);
        module_.reset(Module::load(in, out, path.c_str(), runtime_));
        if (!module_) throw Error(path + ": MNN cannot load it");
        // The model's own output shapes, from a trial forward on zeros at the manifest's
        // input shapes: an MNN model stores no static output shapes, and taking the
        // manifest's would make the engine/manifest check unable to fail for outputs.
        TensorMap zeros;
        for (const auto& t : inputs_) {
            Tensor& z = zeros[t.name];
            z.shape = t.shape;
            z.data.assign(checked_count(t.shape, path + ": input '" + t.name + "'"), 0.f);
        }
        for (const auto& [name, t] : forward(zeros)) model_outputs_.push_back({name, t.shape});
    }

    std::vector<TensorInfo> inputs() const override {
        std::vector<TensorInfo> got;
        const Module::Info* info = module_->getInfo();
        for (size_t i = 0; i < info->inputNames.size() && i < info->inputs.size(); ++i)
            got.push_back({info->inputNames[i], info->inputs[i].dim});
        return got;
    }
    std::vector<TensorInfo> outputs() const override { return model_outputs_; }
    std::string describe() const override { return path_; }

    TensorMap run(const TensorMap& inputs) override {
        TensorMap out = forward(inputs);
        // Only what the manifest promises leaves the engine (check_engine compared them at load).
        for (const auto& t : outputs_) {
            const Tensor& got = out.at(t.name);
            if (got.shape != t.shape)
                throw Error(path_ + ": output '" + t.name + "' is " + shape_str(got.shape) + ", the manifest says " + shape_str(t.shape));
        }
        return out;
    }

private:
    // One forward pass; every copy is sized from the tensor it reads or writes.
    TensorMap forward(const TensorMap& inputs) {
        std::vector<VARP> args;
        for (const auto& t : inputs_) {
            auto it = inputs.find(t.name);
            if (it == inputs.end()) throw Error(path_ + ": missing input '" + t.name + "'");
            const Tensor& src = it->second;
            const size_t want = checked_count(t.shape, path_ + ": input '" + t.name + "'");
            if (src.shape != t.shape || src.data.size() != want)
                throw Error(path_ + ": input '" + t.name + "' holds " + std::to_string(src.data.size()) + " values of shape " +
                            shape_str(src.shape) + ", expected " + shape_str(t.shape));
            VARP v = MNN::Express::_Input(t.shape, MNN::Express::NCHW, halide_type_of<float>());
            float* dst = v->writeMap<float>();
            if (!dst || v->getInfo() == nullptr || v->getInfo()->size != want)
                throw Error(path_ + ": MNN cannot allocate input '" + t.name + "'");
            std::memcpy(dst, src.data.data(), want * sizeof(float));
            args.push_back(v);
        }
        std::vector<VARP> results = module_->onForward(args);
        if (results.size() != outputs_.size())
            throw Error(path_ + ": MNN forward gave " + std::to_string(results.size()) + " outputs, expected " + std::to_string(outputs_.size()));
        TensorMap out;
        for (size_t i = 0; i < outputs_.size(); ++i) {
            if (results[i] == nullptr) throw Error(path_ + ": MNN forward failed");
            VARP v = MNN::Express::_Convert(results[i], MNN::Express::NCHW);
            const MNN::Express::Variable::Info* info = v->getInfo();
            const float* p = v->readMap<float>();
            if (info == nullptr || p == nullptr) throw Error(path_ + ": MNN forward failed for output '" + outputs_[i].name + "'");
            if (info->type != halide_type_of<float>())
                throw Error(path_ + ": output '" + outputs_[i].name + "' is not float32");
            Tensor& t = out[outputs_[i].name];
            t.shape = info->dim;
            const size_t n = checked_count(t.shape, path_ + ": output '" + outputs_[i].name + "'");
            if (n != static_cast<size_t>(info->size)) throw Error(path_ + ": output '" + outputs_[i].name + "' has an inconsistent size");
            t.data.assign(p, p + n);
        }
        return out;
    }

    std::vector<TensorInfo> inputs_, outputs_, model_outputs_;
    std::string path_;
    std::shared_ptr<Executor::RuntimeManager> runtime_;
    std::unique_ptr<Module> module_;
};

}  // namespace

std::unique_ptr<Engine> make_mnn_engine(const std::string& path, const Manifest& m, const MnnOptions& o) {
    return std::unique_ptr<Engine>(new MnnEngine(path, m.inputs, m.outputs, o));
}

std::unique_ptr<Engine> make_mnn_engine(const std::string& path, const std::vector<TensorInfo>& inputs,
                                        const std::vector<TensorInfo>& outputs, const MnnOptions& o) {
    return std::unique_ptr<Engine>(new MnnEngine(path, inputs, outputs, o));
}

}  // namespace dhm
