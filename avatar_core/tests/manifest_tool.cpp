// Reads one manifest with the core's reader and checks: prints "OK" or the error line.
// tests/test_native.py runs dhm's Python validator and this on the same mutated manifests:
// the two sides must accept and refuse the same ones.
//
//   manifest_tool MANIFEST.json...
#include <cstdio>

#include "dhm/error.hpp"
#include "dhm/manifest.hpp"

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        try {
            dhm::Manifest::load(argv[i]);
            std::printf("OK\n");
        } catch (const dhm::Error& e) {
            std::printf("ERROR %s\n", e.what());
        }
    }
    return 0;
}
