#include "dhm/image.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "dhm/error.hpp"

namespace dhm {

Interpolation parse_interpolation(const std::string& name) {
    if (name == "linear") return Interpolation::Linear;
    if (name == "area") return Interpolation::Area;
    throw Error("interpolation '" + name + "' is not supported (linear or area)");
}

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

// cv::resize's scale factors: it stores dst/src and takes the reciprocal (not src/dst,
// which can differ in the last bit and move a tap).
struct Scale {
    double inv, scale;
    Scale(int src, int dst) : inv(static_cast<double>(dst) / src), scale(1.0 / inv) {}
};

// For each output coordinate of the bilinear kernels: the first source index and the two
// fixed-point weights. `area` selects OpenCV's INTER_AREA weights for enlarging.
struct Taps {
    std::vector<int> index;
    std::vector<int> w0, w1;
};

short fixed(float w) { return static_cast<short>(std::lrint(w * kCoefScale)); }

Taps taps(int src_size, int dst_size, bool area) {
    Taps t;
    const Scale s(src_size, dst_size);
    for (int d = 0; d < dst_size; ++d) {
        int i;
        float f;
        if (!area) {
            f = static_cast<float>((d + 0.5) * s.scale - 0.5);
            i = static_cast<int>(std::floor(f));
            f -= static_cast<float>(i);
        } else {
            i = static_cast<int>(std::floor(d * s.scale));
            f = static_cast<float>((d + 1) - (i + 1) * s.inv);
            f = f <= 0 ? 0.f : f - static_cast<float>(std::floor(f));
        }
        if (i < 0) f = 0.f, i = 0;
        if (i >= src_size - 1) f = 0.f, i = src_size - 1;
        t.index.push_back(i);
        t.w0.push_back(fixed(1.f - f));
        t.w1.push_back(fixed(f));
    }
    return t;
}

// OpenCV's two-pass bilinear resize of 8-bit images (resizeGeneric_ with HResizeLinear and
// the vectorised VResizeLinear), with either weight table.
Image resize_bilinear(const Image& src, int dst_w, int dst_h, bool area) {
    const int cn = src.channels;
    const Taps tx = taps(src.width, dst_w, area), ty = taps(src.height, dst_h, area);
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

// INTER_AREA at an integer ratio: the mean of each sx x sy cell, rounded half up as
// OpenCV's vectorised loop does (its scalar tail rounds half to even: within 1 LSB).
Image area_fast(const Image& src, int dst_w, int dst_h, int sx, int sy) {
    const int cn = src.channels, cells = sx * sy;
    Image out(dst_w, dst_h, cn);
    for (int dy = 0; dy < dst_h; ++dy) {
        uint8_t* d = out.row(dy);
        for (int dx = 0; dx < dst_w; ++dx)
            for (int k = 0; k < cn; ++k) {
                int sum = 0;
                for (int y = 0; y < sy; ++y) {
                    const uint8_t* s = src.row(dy * sy + y) + static_cast<size_t>(dx) * sx * cn + k;
                    for (int x = 0; x < sx; ++x) sum += s[x * cn];
                }
                d[dx * cn + k] = static_cast<uint8_t>((sum + cells / 2) / cells);
            }
    }
    return out;
}

struct AreaTap {
    int di, si;  // destination and source index (pixels, not channels)
    float alpha;
};

// OpenCV's computeResizeAreaTab: each output pixel as the source pixels it covers, weighted
// by the covered fraction of the output cell.
std::vector<AreaTap> area_taps(int src_size, int dst_size, double scale) {
    std::vector<AreaTap> tab;
    for (int dx = 0; dx < dst_size; ++dx) {
        const double fsx1 = dx * scale, fsx2 = fsx1 + scale;
        const double cell = std::min(scale, src_size - fsx1);
        int sx1 = static_cast<int>(std::ceil(fsx1)), sx2 = static_cast<int>(std::floor(fsx2));
        sx2 = std::min(sx2, src_size - 1);
        sx1 = std::min(sx1, sx2);
        if (sx1 - fsx1 > 1e-3) tab.push_back({dx, sx1 - 1, static_cast<float>((sx1 - fsx1) / cell)});
        for (int sx = sx1; sx < sx2; ++sx) tab.push_back({dx, sx, static_cast<float>(1.0 / cell)});
        if (fsx2 - sx2 > 1e-3) tab.push_back({dx, sx2, static_cast<float>(std::min(std::min(fsx2 - sx2, 1.), cell) / cell)});
    }
    return tab;
}

// INTER_AREA when shrinking by a non-integer ratio: float accumulation in OpenCV's order
// (each source row weighted across x, then rows weighted into the output row).
Image area_general(const Image& src, int dst_w, int dst_h, double scale_x, double scale_y) {
    const int cn = src.channels;
    const std::vector<AreaTap> xtab = area_taps(src.width, dst_w, scale_x), ytab = area_taps(src.height, dst_h, scale_y);
    Image out(dst_w, dst_h, cn);
    const size_t width = static_cast<size_t>(dst_w) * cn;
    std::vector<float> buf(width), sum(width, 0.f);
    auto store = [&](int dy) {
        uint8_t* d = out.row(dy);
        for (size_t x = 0; x < width; ++x) {
            const long v = std::lrint(sum[x]);  // saturate_cast<uchar>(float): round half to even
            d[x] = static_cast<uint8_t>(std::min(255L, std::max(0L, v)));
        }
    };
    int prev_dy = ytab.empty() ? 0 : ytab[0].di;
    for (const AreaTap& yt : ytab) {
        const uint8_t* s = src.row(yt.si);
        std::fill(buf.begin(), buf.end(), 0.f);
        for (const AreaTap& xt : xtab)
            for (int k = 0; k < cn; ++k) buf[xt.di * cn + k] = buf[xt.di * cn + k] + s[xt.si * cn + k] * xt.alpha;
        if (yt.di != prev_dy) {
            store(prev_dy);
            for (size_t x = 0; x < width; ++x) sum[x] = yt.alpha * buf[x];
            prev_dy = yt.di;
        } else {
            for (size_t x = 0; x < width; ++x) sum[x] += yt.alpha * buf[x];
        }
    }
    store(prev_dy);
    return out;
}

// cv::resize's choice of kernel for INTER_AREA (and its 2x shortcut for INTER_LINEAR).
struct Plan {
    double scale_x, scale_y;
    int int_x, int_y;
    bool integer;
};

Plan plan(const Image& src, int dst_w, int dst_h) {
    const Scale sx(src.width, dst_w), sy(src.height, dst_h);
    const int ix = static_cast<int>(std::lrint(sx.scale)), iy = static_cast<int>(std::lrint(sy.scale));
    return {sx.scale, sy.scale, ix, iy, std::fabs(sx.scale - ix) < DBL_EPSILON && std::fabs(sy.scale - iy) < DBL_EPSILON};
}

void check_sizes(const Image& src, int dst_w, int dst_h) {
    if (src.empty() || dst_w <= 0 || dst_h <= 0) throw Error("resize of an empty image");
}

}  // namespace

Image resize_linear(const Image& src, int dst_w, int dst_h) {
    check_sizes(src, dst_w, dst_h);
    if (dst_w == src.width && dst_h == src.height) return src;
    const Plan p = plan(src, dst_w, dst_h);
    // cv::resize runs INTER_LINEAR at exactly half size as INTER_AREA.
    if (p.integer && p.int_x == 2 && p.int_y == 2) return area_fast(src, dst_w, dst_h, 2, 2);
    return resize_bilinear(src, dst_w, dst_h, false);
}

Image resize_area(const Image& src, int dst_w, int dst_h) {
    check_sizes(src, dst_w, dst_h);
    if (dst_w == src.width && dst_h == src.height) return src;
    const Plan p = plan(src, dst_w, dst_h);
    // OpenCV implements true area averaging only when shrinking along both axes; otherwise
    // it runs the bilinear kernels with area weights.
    if (p.scale_x >= 1 && p.scale_y >= 1) {
        if (p.integer) return area_fast(src, dst_w, dst_h, p.int_x, p.int_y);
        return area_general(src, dst_w, dst_h, p.scale_x, p.scale_y);
    }
    return resize_bilinear(src, dst_w, dst_h, true);
}

Image resize(const Image& src, int dst_w, int dst_h, Interpolation interpolation) {
    return interpolation == Interpolation::Area ? resize_area(src, dst_w, dst_h) : resize_linear(src, dst_w, dst_h);
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
