// 8-bit BGR images and the one resampling operation the pipeline needs: bilinear resize
// with OpenCV's INTER_LINEAR conventions (half-pixel centres, clamped borders, 11-bit
// fixed-point weights), so the native crops match runtime_py's cv2.resize within 1 LSB.
#pragma once

#include <cstddef>
#include <cstdint>
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

// Rows y0..y1-1 and columns x0..x1-1, clipped to the image (as numpy slicing clips).
Image crop(const Image& src, int x0, int y0, int x1, int y1);

// src resized to dst_w x dst_h, like cv2.resize(src, (dst_w, dst_h), INTER_LINEAR).
Image resize_linear(const Image& src, int dst_w, int dst_h);

// Copy `patch` into `dst` with its top-left corner at (x, y).
void paste(Image& dst, const Image& patch, int x, int y);

}  // namespace dhm
