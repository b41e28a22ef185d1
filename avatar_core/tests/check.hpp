// What the core's test programs share: a failure counter, EXPECT (count and print, keep
// going), and the message of the dhm::Error a call throws ("" when it throws none).
#pragma once

#include <cstdio>
#include <string>

#include "dhm/error.hpp"

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
