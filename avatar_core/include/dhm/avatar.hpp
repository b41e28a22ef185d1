// The frame loop the Android and iOS demos run, step for step as
// dhm.runtime_py.pipeline.AvatarPipeline: reference frame (ping-pong) -> crop -> mask ->
// pack face and audio window -> infer -> paste back, with per-stage timings.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dhm/engine.hpp"
#include "dhm/manifest.hpp"
#include "dhm/preprocess.hpp"

namespace dhm {

struct StageTimes {
    static constexpr int kStages = 5;
    static const char* name(int stage);  // load, crop, pack, infer, paste (as runtime_py)
    double total_ms[kStages] = {0, 0, 0, 0, 0};
    int frames = 0;
    double per_frame_ms(int stage) const { return frames ? total_ms[stage] / frames : 0.0; }
    double fps() const;
};

// What the app supplies for one reference frame: the decoded BGR image and its .lms text.
struct ReferenceFrame {
    Image image;
    std::vector<Point> landmarks;
};

class AvatarSession {
public:
    // The engine is checked against the manifest here: a mismatch throws dhm::Error.
    AvatarSession(Manifest manifest, std::unique_ptr<Engine> engine);

    const Manifest& manifest() const { return manifest_; }
    const StageTimes& times() const { return times_; }
    Engine& engine() { return *engine_; }

    // The network inputs for frame `index` of the clip with `reference` as the face: the
    // face tensor [1,6,160,160] and the audio window [1,...]; `crop`/`box` are kept for paste.
    // `mouth`: the frame whose face fills the network's reference half (idle footage painted
    // with an open-mouthed clip frame's face as reference); null: `reference` itself.
    TensorMap prepare(const ReferenceFrame& reference, const float* features, int n_feature_frames, int index, Image* crop, CropBox* box,
                      const ReferenceFrame* mouth = nullptr);

    // One output frame (a copy of the reference frame with the lower face painted).
    // `load_ms` is the app's time to fetch/decode the reference frame, added to the timings.
    Image render(const ReferenceFrame& reference, const float* features, int n_feature_frames, int index, double load_ms = 0.0,
                 const ReferenceFrame* mouth = nullptr);

private:
    Manifest manifest_;
    std::unique_ptr<Engine> engine_;
    StageTimes times_;
};

}  // namespace dhm
