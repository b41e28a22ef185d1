#include "dhm/manifest.hpp"

#include <cstdint>
#include <fstream>
#include <sstream>

#include "dhm/error.hpp"

namespace dhm {

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

size_t element_count(const std::vector<int>& shape) {
    size_t n = 1;
    for (int d : shape) {
        if (d < 0) throw Error("negative dimension in " + shape_str(shape));
        if (d != 0 && n > SIZE_MAX / static_cast<size_t>(d)) throw Error("shape " + shape_str(shape) + " is too large");
        n *= static_cast<size_t>(d);
    }
    return n;
}

std::string shape_str(const std::vector<int>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

int AudioConfig::per_frame_size() const { return static_cast<int>(element_count(per_frame_shape)); }

static void parse_audio_model(const Json& j, Manifest& m);
static void parse_vad(const Json& j, VadConfig& v);

// dhm.io.plain_file_name: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, and no "..".
static bool plain_file_name(const std::string& name) {
    if (name.empty() || name.size() > 128 || name.find("..") != std::string::npos) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool word = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        if (!word && (i == 0 || (c != '.' && c != '-'))) return false;
    }
    return true;
}

static std::vector<TensorInfo> tensors(const Json& list, const char* what) {
    std::vector<TensorInfo> out;
    for (size_t i = 0; i < list.size(); ++i) {
        const Json& t = list.at(i);
        out.push_back({t.at("name").str("tensor name"), t.at("shape").int_list(what)});
    }
    return out;
}

Manifest Manifest::parse(const std::string& json_text) {
    Json root = Json::parse(json_text);
    const std::string& schema = root.at("schema").str("schema");
    if (schema != kSchema) throw Error("manifest: schema '" + schema + "', this app reads '" + kSchema + "'");
    Manifest m;
    const Json& gen = root.at("generator");
    m.generator_arch = gen.at("arch").str("generator.arch");
    m.generator_mode = gen.at("mode").str("generator.mode");
    m.widths = gen.at("widths").int_list("generator.widths");
    m.inputs = tensors(root.at("io").at("inputs"), "io.inputs shape");
    m.outputs = tensors(root.at("io").at("outputs"), "io.outputs shape");

    const Json& pre = root.at("preprocess");
    PreprocessConfig& p = m.preprocess;
    p.lm_left = pre.at("landmarks").at("left").integer("preprocess.landmarks.left");
    p.lm_right = pre.at("landmarks").at("right").integer("preprocess.landmarks.right");
    p.lm_top = pre.at("landmarks").at("top").integer("preprocess.landmarks.top");
    p.crop_size = pre.at("crop_size").integer("preprocess.crop_size");
    p.inner_size = pre.at("inner_size").integer("preprocess.inner_size");
    p.border = pre.at("border").integer("preprocess.border");
    std::vector<int> rect = pre.at("mask_rect").int_list("preprocess.mask_rect");
    if (rect.size() != 4) throw Error("manifest: preprocess.mask_rect must hold x, y, w, h");
    for (int i = 0; i < 4; ++i) p.mask_rect[i] = rect[i];
    auto interpolation = [&](const char* key) {
        const std::string& name = pre.at(key).str(key);
        if (name != "linear" && name != "area")
            throw Error(std::string("manifest: preprocess.") + key + " '" + name + "' is not supported (linear or area)");
        return parse_interpolation(name);
    };
    p.crop_interpolation = interpolation("crop_interpolation");
    p.paste_interpolation = interpolation("paste_interpolation");
    p.color_order = pre.at("color_order").str("preprocess.color_order");
    p.layout = pre.at("layout").str("preprocess.layout");

    const Json& au = root.at("audio");
    AudioConfig& a = m.audio;
    a.mode = au.at("mode").str("audio.mode");
    a.per_frame_shape = au.at("per_frame_shape").int_list("audio.per_frame_shape");
    a.fps = au.at("fps").integer("audio.fps");
    a.window_before = au.at("window_before").integer("audio.window_before");
    a.window_after = au.at("window_after").integer("audio.window_after");
    a.input_shape = au.at("input_shape").int_list("audio.input_shape");

    // The bounds every runtime enforces (dhm.manifest.BOUNDS says the same in Python): they
    // keep indices inside arrays and sizes inside memory. Then what this core implements;
    // anything else is refused here, not mis-rendered (or crashed on) later.
    auto within = [](int v, int lo, int hi, const std::string& what) {
        if (v < lo || v > hi)
            throw Error("manifest: " + what + " " + std::to_string(v) + " is outside " + std::to_string(lo) + " … " + std::to_string(hi));
    };
    within(p.lm_left, 0, 1023, "preprocess.landmarks.left");
    within(p.lm_right, 0, 1023, "preprocess.landmarks.right");
    within(p.lm_top, 0, 1023, "preprocess.landmarks.top");
    within(p.inner_size, 16, 1024, "preprocess.inner_size");
    within(p.border, 0, 64, "preprocess.border");
    if (p.inner_size + 2 * p.border != p.crop_size) throw Error("manifest: crop_size must equal inner_size + 2*border");
    const auto& r = p.mask_rect;
    if (r[0] < 0 || r[1] < 0 || r[2] < 1 || r[3] < 1 || r[2] > p.inner_size - r[0] || r[3] > p.inner_size - r[1])
        throw Error("manifest: mask_rect lies outside the inner crop");
    const double scale = pre.at("scale").number("preprocess.scale");
    if (!(scale > 0 && scale <= 1)) throw Error("manifest: preprocess.scale must be a finite number in (0, 1]");
    p.divisor = static_cast<float>(1.0 / scale);
    within(a.fps, 1, 240, "audio.fps");
    within(a.window_before, 0, 32, "audio.window_before");
    within(a.window_after, 1, 32, "audio.window_after");
    if (a.per_frame_shape.empty() || a.per_frame_shape.size() > 4) throw Error("manifest: audio.per_frame_shape must have 1 … 4 dimensions");
    for (int d : a.per_frame_shape) within(d, 1, 65536, "audio.per_frame_shape dimension");
    if (element_count(a.per_frame_shape) > (size_t(1) << 20)) throw Error("manifest: audio.per_frame_shape holds more than 2^20 values");
    if (a.input_shape.size() != 3) throw Error("manifest: audio.input_shape must have 3 dimensions");
    for (int d : a.input_shape) within(d, 1, 65536, "audio.input_shape dimension");
    for (const auto* list : {&m.inputs, &m.outputs})
        for (const auto& t : *list) {
            if (t.shape.empty() || t.shape.size() > 8) throw Error("manifest: tensor " + t.name + " must have 1 … 8 dimensions");
            for (int d : t.shape) within(d, 1, 65536, "tensor " + t.name + " dimension");
            if (element_count(t.shape) > (size_t(1) << 26)) throw Error("manifest: tensor " + t.name + " holds more than 2^26 values");
        }
    if (gen.has("window") && gen.at("window").integer("generator.window") != a.window_frames())
        throw Error("manifest: generator.window contradicts audio.window_before + window_after");
    if (gen.has("crop_interpolation") &&
        gen.at("crop_interpolation").str("generator.crop_interpolation") != pre.at("crop_interpolation").str("preprocess.crop_interpolation"))
        throw Error("manifest: preprocess.crop_interpolation contradicts generator.crop_interpolation");
    if (p.color_order != "BGR" && p.color_order != "RGB") throw Error("manifest: preprocess.color_order '" + p.color_order + "' is not supported (BGR or RGB)");
    p.rgb = p.color_order == "RGB";
    if (p.layout != "NCHW") throw Error("manifest: preprocess.layout '" + p.layout + "' is not supported (NCHW)");
    if (m.inputs.size() != 2 || m.outputs.size() != 1) throw Error("manifest: expected inputs (face, audio) and one output");
    // Channel counts from the I/O shapes: the output is one colour image, the face input two.
    if (m.outputs[0].shape.size() != 4 || m.outputs[0].shape[1] != 3)
        throw Error("manifest: output is " + shape_str(m.outputs[0].shape) + ", expected one 3-channel image [1, 3, H, W]");
    p.channels = m.outputs[0].shape[1];
    const std::vector<int> face = {1, 2 * p.channels, p.inner_size, p.inner_size};
    if (m.inputs[0].shape != face)
        throw Error("manifest: face input " + m.inputs[0].name + " is " + shape_str(m.inputs[0].shape) + ", expected " + shape_str(face));
    std::vector<int> audio = {1};
    audio.insert(audio.end(), a.input_shape.begin(), a.input_shape.end());
    if (m.inputs[1].shape != audio)
        throw Error("manifest: audio input " + m.inputs[1].name + " is " + shape_str(m.inputs[1].shape) + ", audio.input_shape says " + shape_str(audio));
    if (element_count(a.input_shape) != static_cast<size_t>(a.per_frame_size()) * a.window_frames())
        throw Error("manifest: audio window of " + std::to_string(a.window_frames()) + " frames of " + shape_str(a.per_frame_shape) +
                    " does not fill " + shape_str(a.input_shape));
    const std::vector<int> out = {1, p.channels, p.inner_size, p.inner_size};
    if (m.outputs[0].shape != out) throw Error("manifest: output is " + shape_str(m.outputs[0].shape) + ", expected " + shape_str(out));
    if (a.mode != m.generator_mode) throw Error("manifest: audio.mode and generator.mode disagree");
    if (root.has("audio_model")) parse_audio_model(root.at("audio_model"), m);
    if (root.has("vad")) parse_vad(root.at("vad"), m.vad);
    return m;
}

std::string VadConfig::file_for(const std::string& format) const {
    for (const auto& f : files)
        if (f.first == format) return f.second;
    return "";
}

// The same constants as dhm.runtime_py.vad: a manifest that declares another hop, context or
// state than the model this core runs is refused in one line.
static void parse_vad(const Json& j, VadConfig& v) {
    if (j.at("model").str("vad.model") != "silero-vad") throw Error("manifest: vad.model must be silero-vad");
    v.sample_rate = j.at("sample_rate").integer("vad.sample_rate");
    v.hop = j.at("hop").integer("vad.hop");
    v.context = j.at("context").integer("vad.context");
    if (v.sample_rate != 16000 || v.hop != 512 || v.context != 64)
        throw Error("manifest: vad declares " + std::to_string(v.sample_rate) + " Hz, hop " + std::to_string(v.hop) + ", context " +
                    std::to_string(v.context) + "; silero-vad runs at 16000 Hz, hop 512, context 64");
    v.input = {"input", j.at("inputs").at("input").int_list("vad.inputs.input")};
    v.state = {"state", j.at("inputs").at("state").int_list("vad.inputs.state")};
    if (v.input.shape != std::vector<int>{1, v.context + v.hop})
        throw Error("manifest: vad.inputs.input is " + shape_str(v.input.shape) + ", expected [1, context + hop]");
    if (v.state.shape != std::vector<int>{2, 1, 128}) throw Error("manifest: vad.inputs.state must be [2, 1, 128]");
    const Json& outs = j.at("outputs");
    if (outs.size() != 2) throw Error("manifest: vad.outputs must name the probability and the next state");
    v.output = outs.at(0).str("vad.outputs");
    v.state_out = outs.at(1).str("vad.outputs");
    const Json& d = j.at("decision");
    v.on = d.at("on").number("vad.decision.on");
    v.off = d.at("off").number("vad.decision.off");
    v.hangover = d.at("hangover").integer("vad.decision.hangover");
    v.lookahead = d.at("lookahead").integer("vad.decision.lookahead");
    if (!(v.on >= 0 && v.on <= 1 && v.off >= 0 && v.off <= v.on) || v.hangover < 0 || v.hangover > 100 || v.lookahead < 0 || v.lookahead > 16)
        throw Error("manifest: vad.decision is outside on, off in [0, 1] (off <= on), hangover 0 … 100, lookahead 0 … 16");
    if (j.has("ramp_frames")) v.ramp_frames = j.at("ramp_frames").integer("vad.ramp_frames");
    if (v.ramp_frames < 0 || v.ramp_frames > 12) throw Error("manifest: vad.ramp_frames is outside 0 … 12");
    const Json& arts = j.at("artifacts");
    for (size_t i = 0; i < arts.size(); ++i) {
        const std::string& file = arts.at(i).at("file").str("vad.artifacts.file");
        if (!plain_file_name(file)) throw Error("manifest: vad.artifacts: '" + file + "' is not a plain file name in the export folder");
        v.files.push_back({arts.at(i).at("format").str("vad.artifacts.format"), file});
    }
    v.present = true;
}

std::string AudioModelConfig::file_for(const std::string& format) const {
    for (const auto& f : files)
        if (f.first == format) return f.second;
    return "";
}

// The same rules as dhm.manifest (bounds) and AudioModelSpec.consistency_errors (Python).
static void parse_audio_model(const Json& j, Manifest& m) {
    AudioModelConfig& am = m.audio_model;
    auto within = [](int v, int lo, int hi, const std::string& what) {
        if (v < lo || v > hi)
            throw Error("manifest: audio_model." + what + " " + std::to_string(v) + " is outside " + std::to_string(lo) + " … " + std::to_string(hi));
    };
    am.frontend = j.at("frontend").str("audio_model.frontend");
    am.mode = j.at("mode").str("audio_model.mode");
    am.sample_rate = j.at("sample_rate").integer("audio_model.sample_rate");
    if (am.sample_rate != 16000) throw Error("manifest: audio_model.sample_rate must be 16000");
    am.input = {j.at("input").at("name").str("audio_model.input.name"), j.at("input").at("shape").int_list("audio_model.input.shape")};
    am.output = {j.at("output").at("name").str("audio_model.output.name"), j.at("output").at("shape").int_list("audio_model.output.shape")};
    if (am.input.shape.size() != 3 || am.output.shape.size() != 3)
        throw Error("manifest: audio_model input and output must have 3 dimensions");
    for (int d : am.input.shape) within(d, 1, 65536, "input.shape");
    for (int d : am.output.shape) within(d, 1, 65536, "output.shape");
    am.window_samples = am.input.shape[2];
    am.rows_per_call = am.output.shape[1];
    am.row_size = am.output.shape[2];
    am.row_hop = j.at("row_hop").integer("audio_model.row_hop");
    am.pad_left = j.at("pad_left").integer("audio_model.pad_left");
    within(am.row_hop, 1, 65536, "row_hop");
    within(am.pad_left, 0, 65536, "pad_left");
    const Json& fr = j.at("frame_rows");
    am.frame_count = fr.at("count").integer("audio_model.frame_rows.count");
    am.frame_stride = fr.at("stride").integer("audio_model.frame_rows.stride");
    am.frame_offset = fr.at("offset").integer("audio_model.frame_rows.offset");
    within(am.frame_count, 1, 1024, "frame_rows.count");
    within(am.frame_stride, 1, 1024, "frame_rows.stride");
    within(am.frame_offset, -1024, 1024, "frame_rows.offset");
    am.tail_hop = j.at("tail").at("hop").integer("audio_model.tail.hop");
    am.hops_per_row = j.at("tail").at("hops_per_row").integer("audio_model.tail.hops_per_row");
    within(am.tail_hop, 1, 65536, "tail.hop");
    within(am.hops_per_row, 1, 1024, "tail.hops_per_row");
    const Json& arts = j.at("artifacts");
    for (size_t i = 0; i < arts.size(); ++i) {
        const std::string& file = arts.at(i).at("file").str("audio_model.artifacts.file");
        if (!plain_file_name(file))
            throw Error("manifest: audio_model.artifacts: '" + file + "' is not a plain file name in the export folder");
        am.files.push_back({arts.at(i).at("format").str("audio_model.artifacts.format"), file});
    }
    if (am.mode != m.generator_mode)
        throw Error("manifest: audio_model.mode '" + am.mode + "', the generator listens to '" + m.generator_mode + "'");
    const auto& pf = m.audio.per_frame_shape;
    size_t rows = 1;
    for (size_t i = 0; i + 1 < pf.size(); ++i) rows *= static_cast<size_t>(pf[i]);
    if (static_cast<size_t>(am.frame_count) != rows || am.row_size != pf.back())
        throw Error("manifest: audio_model: " + std::to_string(am.frame_count) + " rows of " + std::to_string(am.row_size) +
                    " per frame, the generator's frames are " + shape_str(pf));
    if (am.sample_rate % m.audio.fps != 0 || am.frame_stride * am.row_hop != am.sample_rate / m.audio.fps)
        throw Error("manifest: audio_model: " + std::to_string(am.frame_stride) + " rows x " + std::to_string(am.row_hop) +
                    " samples per frame is not one frame at " + std::to_string(m.audio.fps) + " fps");
    if (am.pad_left >= am.window_samples) throw Error("manifest: audio_model.pad_left must be inside the window");
    am.present = true;
}

Manifest Manifest::load(const std::string& path) {
    try {
        return parse(read_text_file(path));
    } catch (const Error& e) {
        throw Error(path + ": " + e.what());
    }
}

}  // namespace dhm
