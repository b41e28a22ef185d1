// One exception type for expected failures (bad manifest, wrong shapes, missing files):
// callers show its message as one line, as the Python side does with DhmError.
#pragma once

#include <stdexcept>
#include <string>

namespace dhm {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace dhm
