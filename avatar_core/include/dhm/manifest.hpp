// The export manifest (schema dhm.manifest/1, written by `dhm export`): the one source of
// the I/O names and shapes and of every preprocessing constant. The native code reads them
// from here and nowhere else.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "dhm/image.hpp"
#include "dhm/json.hpp"

namespace dhm {

struct TensorInfo {
    std::string name;
    std::vector<int> shape;
};

struct PreprocessConfig {
    int lm_left = 0, lm_right = 0, lm_top = 0;
    int crop_size = 0, inner_size = 0, border = 0;
    std::array<int, 4> mask_rect{};  // x, y, w, h: fills columns x..x+w-1, rows y..y+h-1
    // The model's crop filter: upstream revisions before 2026-05-23 crop bilinearly, later
    // ones (and FeatherTalk) with INTER_AREA. Paste-back is bilinear in every revision.
    Interpolation crop_interpolation = Interpolation::Linear, paste_interpolation = Interpolation::Linear;
    std::string color_order, layout;
    // From color_order, scale and the output shape: what the packers and paste-back use.
    bool rgb = false;         // the network takes RGB planes (the frames are BGR)
    float divisor = 255.0f;   // 1 / scale in float32: x / 255 exactly, as numpy's x / float32(255)
    int channels = 3;         // image channels: the output's, half the face input's
};

struct AudioConfig {
    std::string mode;
    std::vector<int> per_frame_shape;  // one video frame's slice of the feature array
    int fps = 0;
    int window_before = 0, window_after = 0;  // frames i-before … i+after-1
    std::vector<int> input_shape;              // the network's audio input, without batch
    int per_frame_size() const;
    int window_frames() const { return window_before + window_after; }
};

// The audio model (`audio_model` in the manifest, dhm.audio.geometry.AudioModelSpec): a fixed
// window of 16 kHz PCM in, `rows_per_call` feature rows out; video frame i holds rows
// frame_stride*i + frame_offset … + frame_count-1 (rows before 0 are zeros). At the end of
// an utterance of n samples, rows from (n / tail_hop + 1) / hops_per_row on are zeros.
struct AudioModelConfig {
    bool present = false;
    std::string frontend, mode;
    int sample_rate = 0;
    TensorInfo input, output;  // [1, 1, window_samples] -> [1, rows_per_call, row_size]
    int window_samples = 0, rows_per_call = 0, row_size = 0;
    int row_hop = 0, pad_left = 0;
    int frame_count = 0, frame_stride = 0, frame_offset = 0;
    int tail_hop = 0, hops_per_row = 0;
    std::vector<std::pair<std::string, std::string>> files;  // (format, file name)
    std::string file_for(const std::string& format) const;   // "" when none
};

// The voice detector (`vad` in the manifest, export/vad.py): silero-vad with its sample rate
// fixed: PCM [1, context + hop] and state in, speech probability and next state out.
struct VadConfig {
    bool present = false;
    int sample_rate = 0, hop = 0, context = 0;
    TensorInfo input, state;          // [1, context + hop], [2, 1, 128]
    std::string output, state_out;    // "output", "stateN"
    double on = 0.5, off = 0.5;       // hysteresis thresholds on the speech probability
    int hangover = 0, lookahead = 0;  // hops
    int ramp_frames = 2;              // frames blended on either side of speech
    std::vector<std::pair<std::string, std::string>> files;  // (format, file name)
    std::string file_for(const std::string& format) const;   // "" when none
};

struct Manifest {
    static constexpr const char* kSchema = "dhm.manifest/1";

    std::string generator_arch, generator_mode;
    std::vector<int> widths;
    std::vector<TensorInfo> inputs, outputs;
    PreprocessConfig preprocess;
    AudioConfig audio;
    AudioModelConfig audio_model;  // .present is false for models fed precomputed features
    VadConfig vad;                 // .present is false where the export ships no voice detector

    // Parse and check: unknown schema, missing fields, inconsistent shapes or constants
    // this core cannot honour raise dhm::Error with one clear line.
    static Manifest parse(const std::string& json_text);
    static Manifest load(const std::string& path);

    const TensorInfo& face_input() const { return inputs.at(0); }
    const TensorInfo& audio_input() const { return inputs.at(1); }
    const TensorInfo& output() const { return outputs.at(0); }
};

std::string read_text_file(const std::string& path);
size_t element_count(const std::vector<int>& shape);
std::string shape_str(const std::vector<int>& shape);

}  // namespace dhm
