// Reference frames in Ultralight's ping-pong order: 1, 2, …, n-1, n-2, …, 0, 1, …
#pragma once

#include <vector>

namespace dhm {

class PingPong {
public:
    explicit PingPong(int n_images) : last_(n_images - 1) {}
    int next();  // the reference frame of the next output frame

private:
    int last_;
    int idx_ = 0;
    int step_ = 0;
};

std::vector<int> pingpong(int n_images, int count);

}  // namespace dhm
