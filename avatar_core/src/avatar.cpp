#include "dhm/avatar.hpp"

#include <chrono>

#include "dhm/error.hpp"

namespace dhm {

const char* StageTimes::name(int stage) {
    static const char* names[kStages] = {"load", "crop", "pack", "infer", "paste"};
    return names[stage];
}

double StageTimes::fps() const {
    double total = 0;
    for (double t : total_ms) total += t;
    return total > 0 ? 1000.0 * frames / total : 0.0;
}

AvatarSession::AvatarSession(Manifest manifest, std::unique_ptr<Engine> engine)
    : manifest_(std::move(manifest)), engine_(std::move(engine)) {
    if (!engine_) throw Error("no engine");
    check_engine(*engine_, manifest_);
}

static double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

static void check_image(const Image& img, const char* what) {
    if (img.width < 1 || img.height < 1 || img.width > 16384 || img.height > 16384 || img.channels != 3 ||
        img.data.size() != static_cast<size_t>(img.width) * img.height * 3)
        throw Error(std::string(what) + ": expected a BGR image of 1 … 16384 px a side");
}

TensorMap AvatarSession::prepare(const ReferenceFrame& ref, const float* features, int n, int index, Image* crop_out, CropBox* box_out,
                                 const ReferenceFrame* mouth) {
    const PreprocessConfig& p = manifest_.preprocess;
    check_image(ref.image, "reference frame");
    if (mouth) check_image(mouth->image, "mouth reference frame");
    if (index < 0) throw Error("frame index must be >= 0");
    auto t0 = std::chrono::steady_clock::now();
    CropBox box = crop_box(ref.landmarks, p);
    check_box(box, ref.image.width, ref.image.height);
    Image crop_img = crop_face(ref.image, box, p);
    Image face = inner(crop_img, p);
    Image mouth_face;
    if (mouth) {
        CropBox mouth_box = crop_box(mouth->landmarks, p);
        check_box(mouth_box, mouth->image.width, mouth->image.height);
        mouth_face = inner(crop_face(mouth->image, mouth_box, p), p);
    }
    times_.total_ms[1] += ms_since(t0);
    t0 = std::chrono::steady_clock::now();
    TensorMap in;
    Tensor& ft = in[manifest_.face_input().name];
    ft.shape = manifest_.face_input().shape;
    pack_face(mouth ? mouth_face : face, face, p, ft.data);
    Tensor& at = in[manifest_.audio_input().name];
    at.shape = manifest_.audio_input().shape;
    audio_window(features, n, index, manifest_.audio, at.data);
    times_.total_ms[2] += ms_since(t0);
    if (crop_out) *crop_out = std::move(crop_img);
    if (box_out) *box_out = box;
    return in;
}

Image AvatarSession::render(const ReferenceFrame& ref, const float* features, int n, int index, double load_ms,
                           const ReferenceFrame* mouth) {
    Image crop_img;
    CropBox box{};
    TensorMap in = prepare(ref, features, n, index, &crop_img, &box, mouth);
    auto t0 = std::chrono::steady_clock::now();
    TensorMap out = engine_->run(in);
    times_.total_ms[3] += ms_since(t0);
    auto it = out.find(manifest_.output().name);
    if (it == out.end() || it->second.data.size() != element_count(manifest_.output().shape))
        throw Error(engine_->describe() + ": no output '" + manifest_.output().name + "' of shape " + shape_str(manifest_.output().shape));
    t0 = std::chrono::steady_clock::now();
    Image frame = ref.image;
    paste_back(frame, crop_img, it->second.data.data(), box, manifest_.preprocess);
    times_.total_ms[4] += ms_since(t0);
    times_.total_ms[0] += load_ms;
    times_.frames += 1;
    return frame;
}

}  // namespace dhm
