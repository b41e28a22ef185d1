// The per-frame steps of dhm.data.preprocess, with every constant from the manifest:
// landmarks -> crop box -> crop + resize -> inner crop -> mask -> face tensor;
// features -> audio window; network output -> paste back into the frame.
#pragma once

#include <string>
#include <vector>

#include "dhm/image.hpp"
#include "dhm/manifest.hpp"

namespace dhm {

struct Point {
    int x, y;
};

struct CropBox {
    int x0, y0, x1, y1;  // [y0:y1, x0:x1], a square of side x1-x0 (clipped by the frame)
    int side() const { return x1 - x0; }
};

// A .lms body: one "x y" pair per line, read as float and truncated to int (as Ultralight does).
std::vector<Point> parse_landmarks(const std::string& text);

CropBox crop_box(const std::vector<Point>& landmarks, const PreprocessConfig& p);
void check_box(const CropBox& box, int frame_w, int frame_h);

// crop_size x crop_size BGR crop of the box.
Image crop_face(const Image& frame, const CropBox& box, const PreprocessConfig& p);
Image inner(const Image& crop, const PreprocessConfig& p);
Image masked(const Image& inner_img, const PreprocessConfig& p);

// concat(reference, masked(target)) / 255 as float32 [6, inner, inner] (CHW), appended to out.
void pack_face(const Image& reference_inner, const Image& target_inner, const PreprocessConfig& p, std::vector<float>& out);

// Feature frames index-before … index+after-1 of features [n_frames, per_frame...], zero-padded
// past either end, flattened in the network's audio input order.
void audio_window(const float* features, int n_frames, int index, const AudioConfig& a, std::vector<float>& out);

// Network output [3, inner, inner] in [0,1] -> into crop[border:border+inner] -> resized to the
// box -> written into `frame`.
void paste_back(Image& frame, const Image& crop, const float* pred_chw, const CropBox& box, const PreprocessConfig& p);

}  // namespace dhm
