// Resizes one image with the core's kernels, for the test that compares them with
// OpenCV's cv2.resize over many sizes (tests/test_native.py):
//
//   resize_tool SRC.u8 OUT_DIR < "linear|area W H" lines     writes OUT_DIR/<n>.u8
#include <cstdio>
#include <iostream>
#include <string>

#include "dhm/error.hpp"
#include "dhm/golden.hpp"
#include "dhm/image.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: resize_tool SRC.u8 OUT_DIR < 'linear|area W H' lines\n");
        return 2;
    }
    try {
        const dhm::Image src = dhm::read_u8(argv[1]);
        std::string interp;
        int w, h, n = 0;
        while (std::cin >> interp >> w >> h) {
            const dhm::Image out = dhm::resize(src, w, h, dhm::parse_interpolation(interp));
            dhm::write_u8(std::string(argv[2]) + "/" + std::to_string(n++) + ".u8", out);
        }
        std::printf("resized %d\n", n);
    } catch (const dhm::Error& e) {
        std::fprintf(stderr, "resize_tool: %s\n", e.what());
        return 1;
    }
    return 0;
}
