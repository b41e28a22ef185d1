#include "dhm/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "dhm/error.hpp"

namespace dhm {

std::vector<Point> parse_landmarks(const std::string& text) {
    std::vector<Point> out;
    std::istringstream lines(text);
    std::string line;
    int lineno = 0;
    while (std::getline(lines, line)) {
        ++lineno;
        std::istringstream fields(line);
        float x, y;
        std::string extra;
        if (!(fields >> x)) continue;  // blank line
        if (!(fields >> y) || (fields >> extra) || !std::isfinite(x) || !std::isfinite(y))
            throw Error("landmarks line " + std::to_string(lineno) + ": expected 'x y'");
        // Frames are at most 16384 px; anything far outside is a broken file, and a float
        // beyond int's range would make the truncation undefined.
        if (std::fabs(x) > 1e6f || std::fabs(y) > 1e6f)
            throw Error("landmarks line " + std::to_string(lineno) + ": coordinate out of range");
        out.push_back({static_cast<int>(x), static_cast<int>(y)});
    }
    if (out.empty()) throw Error("landmarks: no points");
    return out;
}

CropBox crop_box(const std::vector<Point>& lms, const PreprocessConfig& p) {
    if (p.lm_left < 0 || p.lm_right < 0 || p.lm_top < 0) throw Error("negative landmark index");
    const int need = std::max({p.lm_left, p.lm_right, p.lm_top}) + 1;
    if (lms.size() < static_cast<size_t>(need))
        throw Error("landmarks have " + std::to_string(lms.size()) + " points; the crop needs at least " + std::to_string(need));
    const int x0 = lms[p.lm_left].x, x1 = lms[p.lm_right].x, y0 = lms[p.lm_top].y;
    return {x0, y0, x1, y0 + (x1 - x0)};
}

void check_box(const CropBox& b, int w, int h) {
    if (b.side() <= 0) throw Error("empty crop box: landmarks out of order");
    if (b.x0 < 0 || b.y0 < 0 || b.x1 > w || b.y0 >= h) throw Error("crop box lies outside the frame");
}

Image crop_face(const Image& frame, const CropBox& box, const PreprocessConfig& p) {
    return resize(crop(frame, box.x0, box.y0, box.x1, box.y1), p.crop_size, p.crop_size, p.crop_interpolation);
}

Image inner(const Image& c, const PreprocessConfig& p) { return crop(c, p.border, p.border, p.border + p.inner_size, p.border + p.inner_size); }

Image masked(const Image& img, const PreprocessConfig& p) {
    Image out = img;
    const auto& r = p.mask_rect;
    if (r[0] < 0 || r[1] < 0 || r[2] < 0 || r[3] < 0 || r[2] > img.width - r[0] || r[3] > img.height - r[1])
        throw Error("mask rectangle lies outside the inner crop");
    for (int y = r[1]; y < r[1] + r[3]; ++y) std::memset(out.row(y) + static_cast<size_t>(r[0]) * out.channels, 0, static_cast<size_t>(r[2]) * out.channels);
    return out;
}

// BGR frame pixels -> the network's planes, in its colour order, divided by 1/scale in
// float32 (x / 255 exactly as numpy's astype(float32) / float32(255)).
static void to_chw(const Image& img, const PreprocessConfig& p, std::vector<float>& out) {
    if (img.channels != p.channels) throw Error("image channels differ from the model's");
    const size_t plane = static_cast<size_t>(img.width) * img.height;
    const size_t base = out.size();
    out.resize(base + plane * img.channels);
    for (int y = 0; y < img.height; ++y) {
        const uint8_t* r = img.row(y);
        for (int x = 0; x < img.width; ++x)
            for (int c = 0; c < img.channels; ++c) {
                const int src = p.rgb ? img.channels - 1 - c : c;
                out[base + c * plane + static_cast<size_t>(y) * img.width + x] = static_cast<float>(r[x * img.channels + src]) / p.divisor;
            }
    }
}

void pack_face(const Image& reference_inner, const Image& target_inner, const PreprocessConfig& p, std::vector<float>& out) {
    to_chw(reference_inner, p, out);
    to_chw(masked(target_inner, p), p, out);
}

void audio_window(const float* features, int n, int index, const AudioConfig& a, std::vector<float>& out) {
    const size_t per = static_cast<size_t>(a.per_frame_size());
    if (per == 0 || n < 0 || (n > 0 && features == nullptr)) throw Error("no audio features");
    const size_t base = out.size();
    out.resize(base + per * a.window_frames(), 0.0f);
    for (int k = 0; k < a.window_frames(); ++k) {
        const int f = index - a.window_before + k;
        if (f >= 0 && f < n) std::memcpy(&out[base + k * per], features + static_cast<size_t>(f) * per, per * sizeof(float));
    }
}

void paste_back(Image& frame, const Image& crop_img, const float* pred, const CropBox& box, const PreprocessConfig& p) {
    if (crop_img.channels != p.channels) throw Error("crop channels differ from the model's");
    Image patched = crop_img;
    const int n = p.inner_size;
    const size_t plane = static_cast<size_t>(n) * n;
    for (int y = 0; y < n; ++y) {
        uint8_t* r = patched.row(p.border + y) + static_cast<size_t>(p.border) * patched.channels;
        for (int x = 0; x < n; ++x)
            for (int c = 0; c < p.channels; ++c) {
                // np.uint8(x * 255): truncation; clamped so a stray value cannot wrap
                const float v = pred[c * plane + static_cast<size_t>(y) * n + x] * p.divisor;
                const int dst = p.rgb ? p.channels - 1 - c : c;
                r[x * p.channels + dst] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, v)));
            }
    }
    const int w = std::min(box.x1, frame.width) - box.x0;
    const int h = std::min(box.y1, frame.height) - box.y0;
    paste(frame, resize(patched, w, h, p.paste_interpolation), box.x0, box.y0);
}

}  // namespace dhm
