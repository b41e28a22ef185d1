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

#include "dhm/engines.hpp"
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
