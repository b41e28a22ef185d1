// What the core's test programs share: a failure counter, EXPECT (count and print, keep
// going), and the message of the dhm::Error a call throws ("" when it throws none).
#pragma once

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "dhm/audio_stream.hpp"
#include "dhm/error.hpp"
#include "dhm/golden.hpp"

static int failures = 0;
#define EXPECT(cond, ...)                                    \
    do {                                                     \
        if (!(cond)) {                                       \
            ++failures;                                      \
            std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            std::printf(__VA_ARGS__);                        \
            std::printf("\n");                               \
        }                                                    \
    } while (0)

template <typename F>
static std::string error_of(F&& f) {
    try {
        f();
    } catch (const dhm::Error& e) {
        return e.what();
    }
    return "";
}

// The integers of a golden folder's text file, one per line (footage, shares, mouth frames).
static std::vector<int> golden_ints(const std::string& path) {
    std::vector<int> out;
    std::ifstream f(path);
    for (int v; f >> v;) out.push_back(v);
    return out;
}

// Clip frame k of a golden folder: ref_k.u8 and its landmarks ref_k.lms.
static dhm::ReferenceFrame golden_frame(const std::string& dir, int k) {
    return dhm::ReferenceFrame{dhm::read_u8(dir + "/ref_" + std::to_string(k) + ".u8"),
                               dhm::parse_landmarks(dhm::read_text_file(dir + "/ref_" + std::to_string(k) + ".lms"))};
}

// The session's next frame, on the frames it names (the painted one, and the face the generator
// sees as its reference where the mouth rests in silence), loaded from a golden folder.
static dhm::Image render_golden_next(dhm::PcmSession& session, const std::string& dir) {
    const int mouth = session.next_mouth_reference();
    if (mouth < 0) return session.render_next(golden_frame(dir, session.next_reference()));
    dhm::ReferenceFrame face = golden_frame(dir, mouth);
    return session.render_next(golden_frame(dir, session.next_reference()), 0.0, &face);
}
