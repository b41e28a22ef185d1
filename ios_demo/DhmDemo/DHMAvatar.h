// Objective-C face of the dhm avatar core for Swift (through DhmDemo-Bridging-Header.h).
// Plain Foundation types and no Objective-C literals, generics or nullability keywords, so
// the same bridge compiles with Xcode (clang, ARC) and, for CI, with gobjc++ and GNUstep.
// Swift imports a method with a trailing NSError** as `throws` when it returns BOOL or an
// object (nil or NO means failure); the two that return a count say so with swift_error:
// they threw when they set the error.
#import <Foundation/Foundation.h>

#if defined(__has_attribute)
#if __has_attribute(swift_error)
#define DHM_THROWS_ON_ERROR __attribute__((swift_error(nonnull_error)))
#endif
#endif
#ifndef DHM_THROWS_ON_ERROR
#define DHM_THROWS_ON_ERROR  // GCC: no Swift
#endif

extern NSString *const DHMErrorDomain;

@interface DHMAvatar : NSObject {
  @private
    void *_state;  // the C++ session (DHMState in DHMAvatar.mm); GCC needs ivars declared here
}

/// Opens a session: the manifest `dhm export` wrote, the model (.mnn), the clip's frame count.
/// Returns nil and sets `error` (one line: bad manifest, engine mismatch, missing MNN) on failure.
- (id)initWithManifestPath:(NSString *)manifestPath
                                    modelPath:(NSString *)modelPath
                                   imageCount:(NSInteger)imageCount
                                      threads:(NSInteger)threads
                                         fp16:(BOOL)fp16
                                        error:(NSError **)error;

/// The reference frame for output frame `index` (Ultralight's ping-pong order).
- (NSInteger)referenceForFrame:(NSInteger)index;

/// One output frame: BGR bytes (width x height x 3) of the reference frame and its .lms text in,
/// BGR bytes of the painted frame out. `features` holds float32 values of `featureFrames` frames.
- (NSData *)renderFrame:(NSData *)bgr
                           width:(NSInteger)width
                          height:(NSInteger)height
                       landmarks:(NSString *)landmarks
                        features:(NSData *)features
                   featureFrames:(NSInteger)featureFrames
                           index:(NSInteger)index
                          loadMs:(double)loadMs
                           error:(NSError **)error;

/// Attaches the manifest's audio model (audio_fp32.mnn beside the manifest): PCM in, frames out.
- (BOOL)openAudioModel:(NSString *)audioModelPath threads:(NSInteger)threads error:(NSError **)error;

/// Rests the mouth in silence: the manifest's voice detector (vad.mnn), the clip frames shown in
/// silence (clip.json's idle_footage: `count` frames from `first`) and the open-mouthed frames whose
/// faces the generator sees as its reference meanwhile (idle_footage's mouth: int32 frame indices;
/// empty: each frame's own). After openAudioModel:, before any PCM.
- (BOOL)openVoiceDetector:(NSString *)vadPath
               firstFrame:(NSInteger)first
               frameCount:(NSInteger)count
              mouthFrames:(NSData *)mouth
                    error:(NSError **)error;

/// 16 kHz mono float32 samples in [-1, 1]; returns how many frames are ready to render (-1 on error).
- (NSInteger)pushPCM:(NSData *)samples error:(NSError **)error DHM_THROWS_ON_ERROR;

/// The utterance ended; returns how many frames are ready to render (-1 on error).
- (NSInteger)finishPCM:(NSError **)error DHM_THROWS_ON_ERROR;

/// The reference frame the next ready frame is painted on (-1 when none is ready).
- (NSInteger)nextReference;

/// The clip frame whose face is the generator's reference for the next frame (-1: none to load).
- (NSInteger)nextMouthReference;

/// Paints the next ready frame on the given reference frame (BGR bytes and .lms text); `mouthBGR`
/// and `mouthLandmarks` are frame nextMouthReference's (nil where it said -1).
- (NSData *)renderNext:(NSData *)bgr
                  width:(NSInteger)width
                 height:(NSInteger)height
              landmarks:(NSString *)landmarks
               mouthBGR:(NSData *)mouthBGR
         mouthLandmarks:(NSString *)mouthLandmarks
                 loadMs:(double)loadMs
                  error:(NSError **)error;

/// "audio_ms" (audio model per frame), "lookahead_ms" (audio-to-frame, algorithmic), "frames",
/// "inferred" (frames the generator painted) and "idle" (YES while the mouth rests on footage).
- (NSDictionary *)audioStats;

/// Per-frame milliseconds by stage (load, crop, pack, infer, paste) and "fps".
- (NSDictionary *)stageTimes;

- (NSString *)describe;

@end
