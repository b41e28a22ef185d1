#include "dhm/schedule.hpp"

#include "dhm/error.hpp"

namespace dhm {

int pingpong_reference(int n_images, long long index) {
    if (index < 0) throw Error("frame index must be >= 0");
    if (n_images < 2) return 0;
    // Ultralight steps first, then uses the frame, turning round at 0 and n-1: a period of
    // 2(n-1) starting one step in.
    const long long last = n_images - 1;
    const long long p = (index + 1) % (2 * last);
    return static_cast<int>(p <= last ? p : 2 * last - p);
}

std::vector<int> pingpong(int n_images, int count) {
    std::vector<int> out;
    for (int i = 0; i < count; ++i) out.push_back(pingpong_reference(n_images, i));
    return out;
}

}  // namespace dhm
