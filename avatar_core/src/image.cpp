#include "dhm/image.hpp"

#include <algorithm>
#include <cmath>

#include "dhm/error.hpp"

namespace dhm {

Image crop(const Image& src, int x0, int y0, int x1, int y1) {
    x0 = std::max(0, x0);
    y0 = std::max(0, y0);
    x1 = std::min(src.width, x1);
    y1 = std::min(src.height, y1);
    if (x1 <= x0 || y1 <= y0) throw Error("crop box lies outside the frame");
    Image out(x1 - x0, y1 - y0, src.channels);
    const size_t n = static_cast<size_t>(out.width) * src.channels;
    for (int y = 0; y < out.height; ++y) std::copy_n(src.row(y0 + y) + static_cast<size_t>(x0) * src.channels, n, out.row(y));
    return out;
}

namespace {

constexpr int kCoefBits = 11;  // OpenCV's INTER_RESIZE_COEF_BITS
constexpr int kCoefScale = 1 << kCoefBits;

// For each output coordinate: the first source index and the two fixed-point weights.
struct Taps {
    std::vector<int> index;
    std::vector<int> w0, w1;
};

short fixed(float w) { return static_cast<short>(std::lrint(w * kCoefScale)); }

Taps taps(int src_size, int dst_size) {
    Taps t;
    const double scale = 1.0 / (static_cast<double>(dst_size) / src_size);
    for (int d = 0; d < dst_size; ++d) {
        float f = static_cast<float>((d + 0.5) * scale - 0.5);
        int s = static_cast<int>(std::floor(f));
        f -= static_cast<float>(s);
        if (s < 0) f = 0.f, s = 0;
        if (s >= src_size - 1) f = 0.f, s = src_size - 1;
        t.index.push_back(s);
        t.w0.push_back(fixed(1.f - f));
        t.w1.push_back(fixed(f));
    }
    return t;
}

}  // namespace

Image resize_linear(const Image& src, int dst_w, int dst_h) {
    if (src.empty() || dst_w <= 0 || dst_h <= 0) throw Error("resize of an empty image");
    const int cn = src.channels;
    const Taps tx = taps(src.width, dst_w), ty = taps(src.height, dst_h);
    Image out(dst_w, dst_h, cn);
    std::vector<int> row0(static_cast<size_t>(dst_w) * cn), row1(row0.size());
    auto horizontal = [&](int sy, std::vector<int>& buf) {
        const uint8_t* s = src.row(std::min(std::max(sy, 0), src.height - 1));
        for (int dx = 0; dx < dst_w; ++dx) {
            const int sx = tx.index[dx] * cn;
            const int sx1 = std::min(tx.index[dx] + 1, src.width - 1) * cn;
            for (int k = 0; k < cn; ++k) buf[dx * cn + k] = s[sx + k] * tx.w0[dx] + s[sx1 + k] * tx.w1[dx];
        }
    };
    for (int dy = 0; dy < dst_h; ++dy) {
        horizontal(ty.index[dy], row0);
        horizontal(ty.index[dy] + 1, row1);
        const int b0 = ty.w0[dy], b1 = ty.w1[dy];
        uint8_t* d = out.row(dy);
        for (size_t x = 0; x < row0.size(); ++x) {
            // OpenCV's vectorised vertical pass: 16-bit high multiplies, then round by 2 bits.
            const int v = (((b0 * (row0[x] >> 4)) >> 16) + ((b1 * (row1[x] >> 4)) >> 16) + 2) >> 2;
            d[x] = static_cast<uint8_t>(std::min(std::max(v, 0), 255));
        }
    }
    return out;
}

void paste(Image& dst, const Image& patch, int x, int y) {
    for (int r = 0; r < patch.height; ++r) {
        const int yy = y + r;
        if (yy < 0 || yy >= dst.height) continue;
        for (int c = 0; c < patch.width; ++c) {
            const int xx = x + c;
            if (xx < 0 || xx >= dst.width) continue;
            std::copy_n(patch.row(r) + static_cast<size_t>(c) * patch.channels, dst.channels,
                        dst.row(yy) + static_cast<size_t>(xx) * dst.channels);
        }
    }
}

}  // namespace dhm
