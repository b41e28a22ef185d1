// Reference frames in Ultralight's ping-pong order: 1, 2, …, n-1, n-2, …, 0, 1, …
// One definition for the core and both app bridges (dhm.runtime_py.pipeline.pingpong_reference is
// the Python runtime's, checked against this one by the golden tests).
#pragma once

#include <vector>

namespace dhm {

// The reference image of output frame `index` (>= 0) over a clip of `n_images` frames.
int pingpong_reference(int n_images, long long index);

// The first `count` references (for tests and tools).
std::vector<int> pingpong(int n_images, int count);

}  // namespace dhm
