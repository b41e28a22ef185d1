// JNI glue between ai.dhm.demo.DhmNative (Java, called from the Kotlin UI) and the dhm
// avatar core. Every dhm::Error becomes a Java IllegalArgumentException carrying its one
// line; nothing here knows about MNN beyond dhm::open_engine.
#include <jni.h>

#include <memory>
#include <string>
#include <vector>

#include "dhm/audio_stream.hpp"
#include "dhm/avatar.hpp"
#include "dhm/engines.hpp"
#include "dhm/error.hpp"
#include "dhm/schedule.hpp"

namespace {

struct Handle {
    std::unique_ptr<dhm::AvatarSession> session;
    std::unique_ptr<dhm::PcmSession> pcm;  // after session: destroyed first
    int n_images = 0;
};

void throw_java(JNIEnv* env, const char* message) {
    jclass cls = env->FindClass("java/lang/IllegalArgumentException");
    if (cls != nullptr) env->ThrowNew(cls, message);
}

std::string to_string(JNIEnv* env, jstring s) {
    if (s == nullptr) return "";
    const char* chars = env->GetStringUTFChars(s, nullptr);
    std::string out(chars);
    env->ReleaseStringUTFChars(s, chars);
    return out;
}

Handle* handle(jlong h) { return reinterpret_cast<Handle*>(h); }

dhm::PcmSession& pcm(jlong h) {
    if (!handle(h)->pcm) throw dhm::Error("no audio model opened (nativeOpenAudio)");
    return *handle(h)->pcm;
}

dhm::ReferenceFrame reference_frame(JNIEnv* env, jbyteArray bgr, jint width, jint height, jstring landmarks) {
    dhm::ReferenceFrame ref;
    ref.image = dhm::Image(width, height, 3);
    if (bgr == nullptr || env->GetArrayLength(bgr) != static_cast<jsize>(ref.image.data.size()))
        throw dhm::Error("frame bytes do not match width x height x 3");
    env->GetByteArrayRegion(bgr, 0, static_cast<jsize>(ref.image.data.size()), reinterpret_cast<jbyte*>(ref.image.data.data()));
    ref.landmarks = dhm::parse_landmarks(to_string(env, landmarks));
    return ref;
}

jbyteArray to_java(JNIEnv* env, const dhm::Image& out) {
    jbyteArray result = env->NewByteArray(static_cast<jsize>(out.data.size()));
    env->SetByteArrayRegion(result, 0, static_cast<jsize>(out.data.size()), reinterpret_cast<const jbyte*>(out.data.data()));
    return result;
}

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_ai_dhm_demo_DhmNative_nativeOpen(JNIEnv* env, jclass, jstring manifest_json, jstring model_path,
                                                               jint n_images, jint threads, jboolean fp16) {
    try {
        dhm::Manifest manifest = dhm::Manifest::parse(to_string(env, manifest_json));
        dhm::EngineOptions options;
        options.threads = threads;
        options.fp16 = fp16 == JNI_TRUE;
        auto engine = dhm::open_engine(to_string(env, model_path), manifest, options);
        auto h = std::make_unique<Handle>();
        h->session = std::make_unique<dhm::AvatarSession>(std::move(manifest), std::move(engine));
        h->n_images = n_images;
        return reinterpret_cast<jlong>(h.release());
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return 0;
    }
}

JNIEXPORT jint JNICALL Java_ai_dhm_demo_DhmNative_nativeReference(JNIEnv* env, jclass, jlong h, jint index) {
    if (index < 0) {
        throw_java(env, "frame index must be >= 0");
        return 0;
    }
    return dhm::pingpong_reference(handle(h)->n_images, index);
}

JNIEXPORT jbyteArray JNICALL Java_ai_dhm_demo_DhmNative_nativeRender(JNIEnv* env, jclass, jlong h, jbyteArray bgr, jint width,
                                                                      jint height, jstring landmarks, jfloatArray features,
                                                                      jint n_feature_frames, jint index, jdouble load_ms) {
    try {
        dhm::ReferenceFrame ref = reference_frame(env, bgr, width, height, landmarks);
        const jsize n_values = env->GetArrayLength(features);
        const auto& audio = handle(h)->session->manifest().audio;
        if (n_values != static_cast<jsize>(n_feature_frames) * audio.per_frame_size())
            throw dhm::Error("features hold " + std::to_string(n_values) + " values, not " + std::to_string(n_feature_frames) + " frames of " +
                             dhm::shape_str(audio.per_frame_shape));
        jfloat* f = env->GetFloatArrayElements(features, nullptr);
        dhm::Image out;
        try {
            out = handle(h)->session->render(ref, f, n_feature_frames, index, load_ms);
        } catch (...) {
            env->ReleaseFloatArrayElements(features, f, JNI_ABORT);
            throw;
        }
        env->ReleaseFloatArrayElements(features, f, JNI_ABORT);
        return to_java(env, out);
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return nullptr;
    }
}

// Audio in, frames out: the manifest's audio model (MNN file, or a golden folder on the host).
JNIEXPORT void JNICALL Java_ai_dhm_demo_DhmNative_nativeOpenAudio(JNIEnv* env, jclass, jlong h, jstring audio_model_path, jint threads) {
    try {
        Handle* hd = handle(h);
        auto engine = dhm::open_audio_engine(to_string(env, audio_model_path), hd->session->manifest(), threads);
        hd->pcm = std::make_unique<dhm::PcmSession>(*hd->session, std::move(engine), hd->n_images);
    } catch (const std::exception& e) {
        throw_java(env, e.what());
    }
}

static std::vector<int> int_list(JNIEnv* env, jintArray values) {
    std::vector<int> out(values ? static_cast<size_t>(env->GetArrayLength(values)) : 0);
    if (!out.empty()) env->GetIntArrayRegion(values, 0, static_cast<jsize>(out.size()), out.data());
    return out;
}

// Rest the mouth in silence: the manifest's voice detector (vad.mnn), the clip frames shown
// in silence and the open-mouthed frames the generator sees as its reference meanwhile
// (clip.json's idle_footage frames and mouth); call after nativeOpenAudio, before any PCM.
JNIEXPORT void JNICALL Java_ai_dhm_demo_DhmNative_nativeRestInSilence(JNIEnv* env, jclass, jlong h, jstring vad_path, jintArray footage,
                                                                      jintArray mouth) {
    try {
        if (footage == nullptr) throw dhm::Error("idle footage: no frames");
        dhm::PcmSession& p = pcm(h);
        p.rest_in_silence(dhm::open_vad_engine(to_string(env, vad_path), handle(h)->session->manifest()), int_list(env, footage),
                          int_list(env, mouth));
    } catch (const std::exception& e) {
        throw_java(env, e.what());
    }
}

// 16 kHz mono samples in; returns how many frames are ready to render.
JNIEXPORT jint JNICALL Java_ai_dhm_demo_DhmNative_nativePushPcm(JNIEnv* env, jclass, jlong h, jfloatArray samples, jint n) {
    try {
        if (samples == nullptr || n < 0 || n > env->GetArrayLength(samples)) throw dhm::Error("PCM: n exceeds the array");
        std::vector<float> buf(static_cast<size_t>(n));
        env->GetFloatArrayRegion(samples, 0, n, buf.data());
        return pcm(h).push(buf.data(), buf.size());
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return 0;
    }
}

JNIEXPORT jint JNICALL Java_ai_dhm_demo_DhmNative_nativeFinishPcm(JNIEnv* env, jclass, jlong h) {
    try {
        return pcm(h).finish();
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return 0;
    }
}

JNIEXPORT jint JNICALL Java_ai_dhm_demo_DhmNative_nativeNextReference(JNIEnv* env, jclass, jlong h) {
    try {
        return pcm(h).next_reference();
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return 0;
    }
}

// The clip frame whose face the generator sees as its reference for the next frame; -1: none to load.
JNIEXPORT jint JNICALL Java_ai_dhm_demo_DhmNative_nativeNextMouthReference(JNIEnv* env, jclass, jlong h) {
    try {
        return pcm(h).next_mouth_reference();
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return -1;
    }
}

// The next frame painted on `bgr`; `mouth_bgr` (null where nativeNextMouthReference said -1) is the reference's face.
JNIEXPORT jbyteArray JNICALL Java_ai_dhm_demo_DhmNative_nativeRenderNext(JNIEnv* env, jclass, jlong h, jbyteArray bgr, jint width,
                                                                          jint height, jstring landmarks, jdouble load_ms,
                                                                          jbyteArray mouth_bgr, jint mouth_width, jint mouth_height,
                                                                          jstring mouth_landmarks) {
    try {
        if (mouth_bgr == nullptr) return to_java(env, pcm(h).render_next(reference_frame(env, bgr, width, height, landmarks), load_ms));
        dhm::ReferenceFrame mouth = reference_frame(env, mouth_bgr, mouth_width, mouth_height, mouth_landmarks);
        return to_java(env, pcm(h).render_next(reference_frame(env, bgr, width, height, landmarks), load_ms, &mouth));
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return nullptr;
    }
}

// Audio-model ms per rendered frame, the algorithmic audio-to-frame lookahead (ms), frames rendered,
// frames the generator painted, and 1 while the mouth rests (the next frame is footage) else 0.
JNIEXPORT jdoubleArray JNICALL Java_ai_dhm_demo_DhmNative_nativeAudioStats(JNIEnv* env, jclass, jlong h) {
    try {
        const dhm::PcmSession& p = pcm(h);
        const bool resting = p.voice() != nullptr && p.last_share() == 0;
        double values[5] = {p.frames_rendered() ? p.stream().audio_ms() / p.frames_rendered() : 0.0, p.lookahead_ms(),
                            static_cast<double>(p.frames_rendered()), static_cast<double>(p.frames_inferred()), resting ? 1.0 : 0.0};
        jdoubleArray out = env->NewDoubleArray(5);
        env->SetDoubleArrayRegion(out, 0, 5, values);
        return out;
    } catch (const std::exception& e) {
        throw_java(env, e.what());
        return nullptr;
    }
}

// Per-frame milliseconds of load, crop, pack, infer, paste, then frames per second.
JNIEXPORT jdoubleArray JNICALL Java_ai_dhm_demo_DhmNative_nativeStageTimes(JNIEnv* env, jclass, jlong h) {
    const dhm::StageTimes& t = handle(h)->session->times();
    double values[dhm::StageTimes::kStages + 1];
    for (int i = 0; i < dhm::StageTimes::kStages; ++i) values[i] = t.per_frame_ms(i);
    values[dhm::StageTimes::kStages] = t.fps();
    jdoubleArray out = env->NewDoubleArray(dhm::StageTimes::kStages + 1);
    env->SetDoubleArrayRegion(out, 0, dhm::StageTimes::kStages + 1, values);
    return out;
}

JNIEXPORT jstring JNICALL Java_ai_dhm_demo_DhmNative_nativeDescribe(JNIEnv* env, jclass, jlong h) {
    const dhm::Manifest& m = handle(h)->session->manifest();
    std::string text = m.generator_arch + "/" + m.generator_mode + " " + dhm::shape_str(m.widths) + " on " + handle(h)->session->engine().describe();
    return env->NewStringUTF(text.c_str());
}

JNIEXPORT void JNICALL Java_ai_dhm_demo_DhmNative_nativeClose(JNIEnv*, jclass, jlong h) { delete handle(h); }

}  // extern "C"
