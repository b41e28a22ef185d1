// The Objective-C++ bridge: DHMAvatar owns a dhm::AvatarSession. Valid with and without
// ARC: no retain/release/autorelease, and [super dealloc] only where ARC is off. The C++
// state sits behind one plain pointer ivar, because GCC's GNU runtime does not run C++
// constructors and destructors of ivars (clang does): new in init, delete in dealloc.
#import "DHMAvatar.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dhm/audio_stream.hpp"
#include "dhm/avatar.hpp"
#include "dhm/engines.hpp"
#include "dhm/error.hpp"
#include "dhm/schedule.hpp"

#ifndef __has_feature
#define __has_feature(x) 0  // GCC
#endif

NSString *const DHMErrorDomain = @"ai.dhm.avatar";

struct DHMState {
    std::unique_ptr<dhm::AvatarSession> session;
    std::unique_ptr<dhm::PcmSession> pcm;  // after session: destroyed first
    int imageCount = 0;
};

static NSError *DHMError(const std::exception &e) {
    NSString *message = [NSString stringWithUTF8String:e.what()];
    if (message == nil) message = @"dhm core error";
    NSDictionary *info = [NSDictionary dictionaryWithObject:message forKey:NSLocalizedDescriptionKey];
    return [NSError errorWithDomain:DHMErrorDomain code:1 userInfo:info];
}

static DHMState *state(void *p) { return static_cast<DHMState *>(p); }

@implementation DHMAvatar

- (id)initWithManifestPath:(NSString *)manifestPath
                                    modelPath:(NSString *)modelPath
                                   imageCount:(NSInteger)imageCount
                                      threads:(NSInteger)threads
                                         fp16:(BOOL)fp16
                                        error:(NSError **)error {
    self = [super init];
    if (self == nil) return nil;
    try {
        dhm::Manifest manifest = dhm::Manifest::load(manifestPath.UTF8String);
        dhm::EngineOptions options;
        options.threads = (int)threads;
        options.fp16 = fp16;
        auto engine = dhm::open_engine(modelPath.UTF8String, manifest, options);
        DHMState *s = new DHMState();
        s->session.reset(new dhm::AvatarSession(std::move(manifest), std::move(engine)));
        s->imageCount = (int)imageCount;
        _state = s;
    } catch (const std::exception &e) {
        if (error) *error = DHMError(e);
        return nil;
    }
    return self;
}

- (void)dealloc {
    delete state(_state);
    _state = NULL;
#if !__has_feature(objc_arc)
    [super dealloc];
#endif
}

- (NSInteger)referenceForFrame:(NSInteger)index {
    if (index < 0) return 0;  // frames are numbered from 0; the schedule has nothing before it
    return dhm::pingpong_reference(state(_state)->imageCount, (long long)index);
}

static dhm::ReferenceFrame DHMReference(NSData *bgr, NSInteger width, NSInteger height, NSString *landmarks) {
    dhm::ReferenceFrame ref;
    ref.image = dhm::Image((int)width, (int)height, 3);
    if (bgr.length != ref.image.data.size()) throw dhm::Error("frame bytes do not match width x height x 3");
    std::memcpy(ref.image.data.data(), bgr.bytes, bgr.length);
    ref.landmarks = dhm::parse_landmarks(landmarks.UTF8String);
    return ref;
}

static dhm::PcmSession &DHMPcm(void *p) {
    if (!state(p)->pcm) throw dhm::Error("no audio model opened (openAudioModel:)");
    return *state(p)->pcm;
}

- (BOOL)openAudioModel:(NSString *)audioModelPath threads:(NSInteger)threads error:(NSError **)error {
    try {
        DHMState *s = state(_state);
        auto engine = dhm::open_audio_engine(audioModelPath.UTF8String, s->session->manifest(), (int)threads);
        s->pcm.reset(new dhm::PcmSession(*s->session, std::move(engine), s->imageCount));
        return YES;
    } catch (const std::exception &e) {
        if (error) *error = DHMError(e);
        return NO;
    }
}

- (BOOL)openVoiceDetector:(NSString *)vadPath
               firstFrame:(NSInteger)first
               frameCount:(NSInteger)count
              mouthFrames:(NSData *)mouth
                    error:(NSError **)error {
    try {
        DHMState *s = state(_state);
        std::vector<int> frames;
        for (NSInteger i = 0; i < count; ++i) frames.push_back((int)(first + i));
        const int32_t *open = mouth ? (const int32_t *)mouth.bytes : nullptr;
        std::vector<int> mouths(open, open + (mouth ? mouth.length / sizeof(int32_t) : 0));
        DHMPcm(_state).rest_in_silence(dhm::open_vad_engine(vadPath.UTF8String, s->session->manifest()), std::move(frames),
                                       std::move(mouths));
        return YES;
    } catch (const std::exception &e) {
        if (error) *error = DHMError(e);
        return NO;
    }
}

- (NSInteger)pushPCM:(NSData *)samples error:(NSError **)error {
    try {
        return DHMPcm(_state).push((const float *)samples.bytes, samples.length / sizeof(float));
    } catch (const std::exception &e) {
        if (error) *error = DHMError(e);
        return -1;
    }
}

- (NSInteger)finishPCM:(NSError **)error {
    try {
        return DHMPcm(_state).finish();
    } catch (const std::exception &e) {
        if (error) *error = DHMError(e);
        return -1;
    }
}

- (NSInteger)nextReference {
    try {
        return DHMPcm(_state).next_reference();
    } catch (const std::exception &) {
        return -1;
    }
}

- (NSInteger)nextMouthReference {
    try {
        return DHMPcm(_state).next_mouth_reference();
    } catch (const std::exception &) {
        return -1;
    }
}

- (NSData *)renderNext:(NSData *)bgr
                  width:(NSInteger)width
                 height:(NSInteger)height
              landmarks:(NSString *)landmarks
               mouthBGR:(NSData *)mouthBGR
         mouthLandmarks:(NSString *)mouthLandmarks
                 loadMs:(double)loadMs
                  error:(NSError **)error {
    try {
        // the clip's frames share one size, so the mouth frame has the painted frame's
        dhm::ReferenceFrame mouth;
        if (mouthBGR) mouth = DHMReference(mouthBGR, width, height, mouthLandmarks);
        dhm::Image out = DHMPcm(_state).render_next(DHMReference(bgr, width, height, landmarks), loadMs, mouthBGR ? &mouth : nullptr);
        return [NSData dataWithBytes:out.data.data() length:out.data.size()];
    } catch (const std::exception &e) {
        if (error) *error = DHMError(e);
        return nil;
    }
}

- (NSDictionary *)audioStats {
    NSMutableDictionary *d = [NSMutableDictionary dictionary];
    DHMState *s = state(_state);
    if (!s->pcm) return d;
    const int n = s->pcm->frames_rendered();
    [d setObject:[NSNumber numberWithDouble:n ? s->pcm->stream().audio_ms() / n : 0.0] forKey:@"audio_ms"];
    [d setObject:[NSNumber numberWithDouble:s->pcm->lookahead_ms()] forKey:@"lookahead_ms"];
    [d setObject:[NSNumber numberWithInt:n] forKey:@"frames"];
    [d setObject:[NSNumber numberWithInt:s->pcm->frames_inferred()] forKey:@"inferred"];
    [d setObject:[NSNumber numberWithInt:s->pcm->voice() != nullptr && s->pcm->last_share() == 0 ? 1 : 0] forKey:@"idle"];
    return d;
}

- (NSData *)renderFrame:(NSData *)bgr
                           width:(NSInteger)width
                          height:(NSInteger)height
                       landmarks:(NSString *)landmarks
                        features:(NSData *)features
                   featureFrames:(NSInteger)featureFrames
                           index:(NSInteger)index
                          loadMs:(double)loadMs
                           error:(NSError **)error {
    try {
        dhm::ReferenceFrame ref = DHMReference(bgr, width, height, landmarks);
        const auto &audio = state(_state)->session->manifest().audio;
        if (features.length != (NSUInteger)featureFrames * audio.per_frame_size() * sizeof(float))
            throw dhm::Error("features do not hold " + std::to_string(featureFrames) + " frames of " + dhm::shape_str(audio.per_frame_shape));
        dhm::Image out = state(_state)->session->render(ref, (const float *)features.bytes, (int)featureFrames, (int)index, loadMs);
        return [NSData dataWithBytes:out.data.data() length:out.data.size()];
    } catch (const std::exception &e) {
        if (error) *error = DHMError(e);
        return nil;
    }
}

- (NSDictionary *)stageTimes {
    const dhm::StageTimes &t = state(_state)->session->times();
    NSMutableDictionary *d = [NSMutableDictionary dictionary];
    for (int i = 0; i < dhm::StageTimes::kStages; ++i)
        [d setObject:[NSNumber numberWithDouble:t.per_frame_ms(i)] forKey:[NSString stringWithUTF8String:dhm::StageTimes::name(i)]];
    [d setObject:[NSNumber numberWithDouble:t.fps()] forKey:@"fps"];
    return d;
}

- (NSString *)describe {
    const dhm::Manifest &m = state(_state)->session->manifest();
    std::string text = m.generator_arch + "/" + m.generator_mode + " " + dhm::shape_str(m.widths) + " on " + state(_state)->session->engine().describe();
    return [NSString stringWithUTF8String:text.c_str()];
}

@end
