// A bounded, seeded mutational fuzz of what the core reads from outside: the manifest
// (text), the landmarks (text), the features and frame index an app passes. Built with
// -fsanitize=address,undefined (cmake -DDHM_SANITIZE=ON) so any memory error or undefined
// behaviour aborts the run; every input must either work or be refused with dhm::Error.
//
//   fuzz_test GOLDEN_DIR ITERATIONS SEED [SECONDS]
//
// First the regression inputs (each crash found so far, and the cases a user met), then
// ITERATIONS random mutations of the golden manifest and landmarks.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <typeinfo>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dhm/avatar.hpp"
#include "dhm/error.hpp"
#include "dhm/golden.hpp"

using namespace dhm;

namespace {

// Outputs of the manifest's shape (zeros): the frame loop runs to the end, paste-back included.
class ConstantEngine : public Engine {
public:
    explicit ConstantEngine(const Manifest& m) : inputs_(m.inputs), outputs_(m.outputs) {}
    std::vector<TensorInfo> inputs() const override { return inputs_; }
    std::vector<TensorInfo> outputs() const override { return outputs_; }
    TensorMap run(const TensorMap&) override {
        TensorMap out;
        for (const auto& t : outputs_) out[t.name] = Tensor{t.shape, std::vector<float>(element_count(t.shape), 0.5f)};
        return out;
    }
    std::string describe() const override { return "constant engine"; }

private:
    std::vector<TensorInfo> inputs_, outputs_;
};

struct Stats {
    long inputs = 0, parsed = 0, rendered = 0, refused = 0, findings = 0;
};

struct Inputs {
    std::string manifest, landmarks;
    Image frame;
    std::vector<float> features;
    int n_frames = 0;
};

// One input through the core: parse, open a session, render a frame.
void exercise(const std::string& manifest_text, const std::string& lms_text, const Image& frame, const float* features,
              int n_frames, int index, Stats& stats) {
    ++stats.inputs;
    try {
        Manifest m = Manifest::parse(manifest_text);
        ++stats.parsed;
        AvatarSession session(m, std::unique_ptr<Engine>(new ConstantEngine(m)));
        ReferenceFrame ref{frame, parse_landmarks(lms_text)};
        Image out = session.render(ref, features, n_frames, index);
        if (out.width != frame.width || out.height != frame.height) throw std::logic_error("output frame changed size");
        ++stats.rendered;
    } catch (const Error&) {
        ++stats.refused;
    } catch (const std::exception& e) {
        // anything but a dhm::Error (bad_alloc, length_error, …) is a finding
        ++stats.findings;
        std::printf("FINDING (%s): %s\n", typeid(e).name(), e.what());
    }
}

std::string replace_first(std::string text, const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    if (at == std::string::npos) throw Error("regression input not built: the golden manifest has no '" + from + "'");
    text.replace(at, from.size(), to);
    return text;
}

// The inputs a careless or unlucky user produced, and every crash found so far.
std::vector<std::string> regression_manifests(const std::string& m) {
    std::vector<std::string> out;
    for (const char* v : {"-5", "110", "500", "2147483647", "-2147483648", "1e300", "1e10"})
        out.push_back(replace_first(m, "\"left\": 1", std::string("\"left\": ") + v));
    out.push_back(replace_first(m, "\"mask_rect\": [\n      5,\n      5,\n      150,", "\"mask_rect\": [\n      5,\n      5,\n      -150,"));
    for (const char* v : {"1e300", "-1e300", "nan", "inf", "Infinity", "NaN", "0x10", "+168", "168.5", "2147483648", "-168", "20000"})
        out.push_back(replace_first(m, "\"crop_size\": 168", std::string("\"crop_size\": ") + v));
    out.push_back(replace_first(replace_first(m, "\"inner_size\": 160", "\"inner_size\": 20000"), "\"crop_size\": 168",
                                "\"crop_size\": 20008"));
    out.push_back(replace_first(m, "\"window_after\": 4", "\"window_after\": 0"));
    out.push_back(replace_first(m, "\"window_before\": 4", "\"window_before\": -4"));
    out.push_back(replace_first(m, "\"fps\": 25", "\"fps\": 0"));
    out.push_back(replace_first(m, "\"per_frame_shape\": [\n      2,", "\"per_frame_shape\": [\n      0,"));
    out.push_back(replace_first(m, "\"per_frame_shape\": [\n      2,", "\"per_frame_shape\": [\n      -2,"));
    out.push_back(replace_first(m, "\"scale\": 0.00392156862745098", "\"scale\": 0"));
    out.push_back(std::string(10000, '[') + std::string(10000, ']'));
    out.push_back(std::string(100000, '['));
    out.push_back("{\"schema\": \"dhm.manifest/1\", \"generator\": " + std::string(5000, '[') + "}");
    out.push_back(m.substr(0, m.size() / 2));
    out.push_back(m + "garbage");
    out.push_back("\"\\u12G4\"");
    out.push_back(std::string("{\"a\": \"") + '\x01' + "\"}");
    return out;
}

const char* kNumbers[] = {"-1", "0", "1", "2", "3", "7", "8", "16", "160", "168", "-2147483648", "2147483647", "2147483648",
                          "4294967296", "1e300", "-1e300", "1e-300", "nan", "NaN", "inf", "-Infinity", "0x10", "+168", "1.5",
                          "20000", "65536", "65537", "1e9", "-0", "\"x\"", "null", "[]", "{}", "true", "[1,2]"};
const char* kStrings[] = {"\"area\"", "\"linear\"", "\"nearest\"", "\"\"", "\"hubert\"", "\"wenet\"", "\"BGR\"", "\"RGB\"",
                          "\"NCHW\"", "\"dhm.manifest/9\"", "\"face\"", "\"audio\"", "\"out\"", "1", "null"};

std::string mutate_text(std::string text, std::mt19937_64& rng, bool numbers_and_strings) {
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n && !text.empty(); ++k) {
        const size_t at = rng() % text.size();
        switch (rng() % (numbers_and_strings ? 8 : 5)) {
            case 0: text[at] = static_cast<char>(32 + rng() % 95); break;                     // flip a byte
            case 1: text.erase(at, 1 + rng() % 16); break;                                     // delete a span
            case 2: text.insert(at, text.substr(at, 1 + rng() % 32)); break;                   // duplicate a span
            case 3: text.resize(at); break;                                                     // truncate
            case 4: text.insert(at, std::string(1 + rng() % 200, "[{\"-0e."[rng() % 6])); break;  // nesting, junk
            default: {  // a number or string token replaced by a hostile one
                size_t p = at;
                const bool want_number = rng() % 2;
                while (p < text.size() && !(want_number ? (isdigit(static_cast<unsigned char>(text[p])) != 0) : text[p] == '"')) ++p;
                if (p >= text.size()) break;
                size_t e = p + 1;
                if (want_number) {
                    while (e < text.size() && (isdigit(static_cast<unsigned char>(text[e])) || text[e] == '.' || text[e] == 'e' || text[e] == '-')) ++e;
                    text.replace(p, e - p, kNumbers[rng() % (sizeof kNumbers / sizeof *kNumbers)]);
                } else {
                    while (e < text.size() && text[e] != '"') ++e;
                    text.replace(p, std::min(text.size(), e + 1) - p, kStrings[rng() % (sizeof kStrings / sizeof *kStrings)]);
                }
            }
        }
    }
    return text;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: fuzz_test GOLDEN_DIR ITERATIONS SEED [SECONDS]\n");
        return 2;
    }
    const std::string dir = argv[1];
    const long iterations = std::stol(argv[2]);
    std::mt19937_64 rng(std::stoull(argv[3]));
    const double budget_s = argc > 4 ? std::stod(argv[4]) : 60.0;
    const auto t0 = std::chrono::steady_clock::now();
    Stats stats;
    try {
        const std::string manifest = read_text_file(dir + "/manifest.json");
        std::ifstream cases(dir + "/cases.txt");
        int i0 = 0, r0 = 0;
        if (!(cases >> i0 >> r0)) throw Error("no cases");
        const Image frame = read_u8(dir + "/ref_" + std::to_string(r0) + ".u8");
        const std::string lms = read_text_file(dir + "/ref_" + std::to_string(r0) + ".lms");
        const Tensor features = read_f32(dir + "/features.f32");
        const int n = features.shape.at(0);

        exercise(manifest, lms, frame, features.data.data(), n, i0, stats);
        if (stats.rendered != 1) throw Error("the unmutated golden input does not render");
        for (const std::string& m : regression_manifests(manifest)) exercise(m, lms, frame, features.data.data(), n, i0, stats);
        for (const char* l : {"", "nan nan\n", "1e30 1e30\n", "-1e10 5\n", "1 2 3\n", "x y\n"})
            exercise(manifest, std::string(l) + lms, frame, features.data.data(), n, i0, stats);
        exercise(manifest, "5 5\n", frame, features.data.data(), n, i0, stats);  // fewer points than the crop needs
        for (int index : {-1, n + 100}) exercise(manifest, lms, frame, features.data.data(), n, index, stats);
        exercise(manifest, lms, frame, nullptr, 0, 0, stats);
        exercise(manifest, lms, Image(), features.data.data(), n, i0, stats);

        for (long it = 0; it < iterations; ++it) {
            if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > budget_s) break;
            const unsigned what = rng() % 10;
            std::string m = manifest, l = lms;
            int count = n, index = i0;
            if (what < 7) m = mutate_text(m, rng, true);
            else if (what < 9) l = mutate_text(l, rng, false);
            else count = static_cast<int>(rng() % (n + 1)), index = static_cast<int>(rng() % (n + 20)) - 10;  // count <= the buffer: the caller's contract
            exercise(m, l, frame, count ? features.data.data() : nullptr, count, index, stats);
        }
    } catch (const Error& e) {
        std::printf("FAIL: %s\n", e.what());
        return 1;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("fuzz: %ld inputs in %.1f s: %ld parsed, %ld rendered, %ld refused with dhm::Error, %ld findings\n",
                stats.inputs, secs, stats.parsed, stats.rendered, stats.refused, stats.findings);
    return stats.findings ? 1 : 0;
}
