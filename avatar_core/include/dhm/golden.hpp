// Reading the golden-vector files `dhm golden` (dhm.runtime_py.golden) writes:
//   *.u8   int32 height, width, channels, then the bytes (HWC BGR)
//   *.f32  int32 ndim, int32 dims…, then float32 values (C order)
// Little-endian, as on every phone and host dhm targets.
#pragma once

#include <string>

#include "dhm/engine.hpp"
#include "dhm/image.hpp"

namespace dhm {

Image read_u8(const std::string& path);
Tensor read_f32(const std::string& path);
void write_u8(const std::string& path, const Image& image);

}  // namespace dhm
