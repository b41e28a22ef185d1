#include "dhm/golden.hpp"

#include <cstdint>
#include <fstream>

#include "dhm/error.hpp"

namespace dhm {

static std::ifstream open(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    return in;
}

static int32_t read_i32(std::ifstream& in, const std::string& path) {
    int32_t v = 0;
    if (!in.read(reinterpret_cast<char*>(&v), sizeof v)) throw Error(path + ": truncated header");
    return v;
}

Image read_u8(const std::string& path) {
    std::ifstream in = open(path);
    const int h = read_i32(in, path), w = read_i32(in, path), c = read_i32(in, path);
    if (h <= 0 || w <= 0 || c <= 0 || h > 16384 || w > 16384 || c > 4) throw Error(path + ": bad image header");
    Image img(w, h, c);
    if (!in.read(reinterpret_cast<char*>(img.data.data()), static_cast<std::streamsize>(img.data.size()))) throw Error(path + ": truncated");
    return img;
}

void write_u8(const std::string& path, const Image& img) {
    std::ofstream out(path, std::ios::binary);
    const int32_t header[3] = {img.height, img.width, img.channels};
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(img.data.data()), static_cast<std::streamsize>(img.data.size()));
    if (!out) throw Error(path + ": cannot write");
}

Tensor read_f32(const std::string& path) {
    std::ifstream in = open(path);
    const int nd = read_i32(in, path);
    if (nd <= 0 || nd > 8) throw Error(path + ": bad tensor header");
    Tensor t;
    for (int i = 0; i < nd; ++i) t.shape.push_back(read_i32(in, path));
    t.data.resize(element_count(t.shape));
    if (!in.read(reinterpret_cast<char*>(t.data.data()), static_cast<std::streamsize>(t.data.size() * sizeof(float))))
        throw Error(path + ": truncated");
    return t;
}

}  // namespace dhm
