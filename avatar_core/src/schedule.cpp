#include "dhm/schedule.hpp"

namespace dhm {

int PingPong::next() {
    if (last_ < 1) return 0;
    if (idx_ >= last_) step_ = -1;
    else if (idx_ < 1) step_ = 1;
    idx_ += step_;
    return idx_;
}

std::vector<int> pingpong(int n_images, int count) {
    PingPong p(n_images);
    std::vector<int> out;
    for (int i = 0; i < count; ++i) out.push_back(p.next());
    return out;
}

}  // namespace dhm
