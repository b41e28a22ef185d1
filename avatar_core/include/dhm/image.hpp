// 8-bit BGR images and the resampling the pipeline needs, with OpenCV's cv::resize
// conventions so the native crops match runtime_py's cv2.resize within 1 LSB:
//   linear: INTER_LINEAR (half-pixel centres, clamped borders, 11-bit fixed-point weights);
//   area:   INTER_AREA (pixel-area averaging when shrinking, with OpenCV's integer-ratio
//           fast path; OpenCV's area-weighted bilinear when enlarging).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dhm {

struct Image {
    int width = 0, height = 0, channels = 3;
    std::vector<uint8_t> data;  // row-major, interleaved (HWC)

    Image() = default;
    Image(int w, int h, int c = 3) : width(w), height(h), channels(c), data(static_cast<size_t>(w) * h * c, 0) {}
    uint8_t* row(int y) { return data.data() + static_cast<size_t>(y) * width * channels; }
    const uint8_t* row(int y) const { return data.data() + static_cast<size_t>(y) * width * channels; }
    bool empty() const { return data.empty(); }
};

enum class Interpolation { Linear, Area };

// "linear" or "area" (the manifest's names); anything else throws dhm::Error.
Interpolation parse_interpolation(const std::string& name);

// Rows y0..y1-1 and columns x0..x1-1, clipped to the image (as numpy slicing clips).
Image crop(const Image& src, int x0, int y0, int x1, int y1);

// src resized to dst_w x dst_h, like cv2.resize(src, (dst_w, dst_h), interpolation=...).
Image resize(const Image& src, int dst_w, int dst_h, Interpolation interpolation);
Image resize_linear(const Image& src, int dst_w, int dst_h);
Image resize_area(const Image& src, int dst_w, int dst_h);

// Copy `patch` into `dst` with its top-left corner at (x, y).
void paste(Image& dst, const Image& patch, int x, int y);

}  // namespace dhm
