// The Objective-C++ bridge on Linux with GNUstep: DHMAvatar driven as the Swift app drives
// it, on golden vectors from dhm.runtime_py (model path = the golden folder, whose recorded
// MNN outputs the core replays: this host build has no MNN).
//   bridge_test GOLDEN_DIR IMAGE_COUNT
#import <Foundation/Foundation.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#import "DHMAvatar.h"

static int failures = 0;
static void expect(bool ok, const char *what) {
    if (!ok) {
        ++failures;
        std::printf("FAIL: %s\n", what);
    }
}

static NSData *payload(NSData *file, int *dims, int *ndims) {
    const int32_t *h = (const int32_t *)file.bytes;
    int nd = *ndims > 0 ? *ndims : h[0];  // .u8: fixed 3 dims, no count; .f32: count first
    const int32_t *d = *ndims > 0 ? h : h + 1;
    for (int i = 0; i < nd; ++i) dims[i] = d[i];
    size_t header = (size_t)((*ndims > 0 ? 0 : 1) + nd) * 4;
    *ndims = nd;
    return [file subdataWithRange:NSMakeRange(header, file.length - header)];
}

static std::vector<int32_t> ints(NSString *dir, const char *name) {
    std::vector<int32_t> out;
    std::ifstream f((std::string(dir.UTF8String) + "/" + name).c_str());
    for (int v; f >> v;) out.push_back(v);
    return out;
}

static NSData *frame_bytes(NSString *dir, NSInteger k, int *dims) {
    int nd = 3;
    NSString *name = [NSString stringWithFormat:@"ref_%d.u8", (int)k];
    return payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:name]], dims, &nd);
}

static NSString *frame_landmarks(NSString *dir, NSInteger k) {
    NSString *name = [NSString stringWithFormat:@"ref_%d.lms", (int)k];
    return [NSString stringWithContentsOfFile:[dir stringByAppendingPathComponent:name] encoding:NSUTF8StringEncoding error:NULL];
}

// Speech with silence around it, resting the mouth as the app does: the detector's and the
// models' recorded runs replayed (the golden folder stands in for vad.mnn); frames and decisions
// as runtime_py's, an open-mouthed reference face in speech.
static void idle(DHMAvatar *avatar, NSString *dir) {
    NSError *error = nil;
    int pdims[8], pnd = 0;
    NSData *pcm = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:@"idle_pcm.f32"]], pdims, &pnd);
    std::vector<int32_t> footage = ints(dir, "idle_footage.txt"), mouth = ints(dir, "idle_mouth.txt"), shares = ints(dir, "idle_shares.txt");
    NSData *mouthData = [NSData dataWithBytes:mouth.data() length:mouth.size() * sizeof(int32_t)];
    expect([avatar openAudioModel:dir threads:1 error:&error] && !footage.empty() &&
               [avatar openVoiceDetector:dir firstFrame:footage[0] frameCount:(NSInteger)footage.size() mouthFrames:mouthData error:&error],
           "open the audio model and the voice detector (replayed)");
    int rendered = 0, worst = 0, silent = 0;
    const NSUInteger chunk = 320 * sizeof(float), chunks = (pcm.length + chunk - 1) / chunk;
    for (NSUInteger c = 0; c <= chunks; ++c) {
        const NSUInteger start = c * chunk;
        NSInteger pending = c < chunks ? [avatar pushPCM:[pcm subdataWithRange:NSMakeRange(start, std::min(chunk, pcm.length - start))] error:&error]
                                       : [avatar finishPCM:&error];
        for (; pending > 0; --pending, ++rendered) {
            NSInteger reference = [avatar nextReference], m = [avatar nextMouthReference];
            int dims[3], mdims[3];
            NSData *bgr = frame_bytes(dir, reference, dims);  // before dims is read: argument order is unspecified
            NSData *mouthBGR = m >= 0 ? frame_bytes(dir, m, mdims) : nil;
            NSData *out = [avatar renderNext:bgr width:dims[1] height:dims[0]
                                   landmarks:frame_landmarks(dir, reference)
                                    mouthBGR:mouthBGR
                              mouthLandmarks:m >= 0 ? frame_landmarks(dir, m) : nil
                                      loadMs:0.0
                                       error:&error];
            int wd[3], wnd = 3;
            NSString *want = [NSString stringWithFormat:@"idle_pasted_%d.u8", rendered];
            NSData *expected = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:want]], wd, &wnd);
            if (out == nil || expected == nil || out.length != expected.length) {
                std::printf("idle frame %d (reference %d, mouth %d): %s\n", rendered, (int)reference, (int)m,
                            error ? error.localizedDescription.UTF8String : "no frame");
                expect(false, "idle frame");
                return;
            }
            const uint8_t *a = (const uint8_t *)out.bytes, *b = (const uint8_t *)expected.bytes;
            for (NSUInteger i = 0; i < out.length; ++i) worst = std::max(worst, std::abs((int)a[i] - (int)b[i]));
            const bool resting = [[[avatar audioStats] objectForKey:@"idle"] intValue] == 1;
            expect(rendered < (int)shares.size() && resting == (shares[rendered] == 0) && (m < 0) == resting, "idle decision");
            silent += resting;
        }
    }
    NSDictionary *audio = [avatar audioStats];
    expect(rendered == (int)shares.size() && worst <= 1 && silent > 0 && [[audio objectForKey:@"inferred"] intValue] == rendered - silent,
           "idle frames as runtime_py's");
    std::printf("idle: %d frames, %d footage without a model, worst difference %d LSB\n", rendered, silent, worst);
}

static int run(int argc, char **argv) {
    {
        if (argc < 3) {
            std::fprintf(stderr, "usage: bridge_test GOLDEN_DIR IMAGE_COUNT\n");
            return 2;
        }
        NSString *dir = [NSString stringWithUTF8String:argv[1]];
        NSInteger images = atoi(argv[2]);
        NSError *error = nil;
        DHMAvatar *avatar = [[DHMAvatar alloc] initWithManifestPath:[dir stringByAppendingPathComponent:@"manifest.json"]
                                                          modelPath:dir
                                                         imageCount:images
                                                            threads:1
                                                               fp16:NO
                                                              error:&error];
        if (avatar == nil) {
            std::printf("FAIL: open: %s\n", error.localizedDescription.UTF8String);
            return 1;
        }
        int fdims[8], fnd = 0;
        NSData *features = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:@"features.f32"]], fdims, &fnd);
        NSString *cases = [NSString stringWithContentsOfFile:[dir stringByAppendingPathComponent:@"cases.txt"]
                                                    encoding:NSUTF8StringEncoding
                                                       error:NULL];
        int worst = 0, n = 0;
        NSArray *lines = [cases componentsSeparatedByString:@"\n"];
        for (NSUInteger k = 0; k < lines.count; ++k) {
            NSString *line = [lines objectAtIndex:k];
            int index, reference;
            if (std::sscanf(line.UTF8String, "%d %d", &index, &reference) != 2) continue;
            ++n;
            expect([avatar referenceForFrame:index] == reference, "ping-pong reference");
            int dims[3], nd = 3;
            NSString *ref = [NSString stringWithFormat:@"ref_%d", reference];
            NSData *bgr = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:[ref stringByAppendingString:@".u8"]]], dims, &nd);
            NSString *lms = [NSString stringWithContentsOfFile:[dir stringByAppendingPathComponent:[ref stringByAppendingString:@".lms"]]
                                                      encoding:NSUTF8StringEncoding
                                                         error:NULL];
            NSData *out = [avatar renderFrame:bgr width:dims[1] height:dims[0] landmarks:lms features:features featureFrames:fdims[0]
                                        index:index loadMs:0.0 error:&error];
            if (out == nil) {
                std::printf("FAIL: render %d: %s\n", index, error.localizedDescription.UTF8String);
                return 1;
            }
            int wd[3], wnd = 3;
            NSString *want = [NSString stringWithFormat:@"pasted_%d.u8", index];
            NSData *expected = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:want]], wd, &wnd);
            expect(out.length == expected.length, "frame size");
            const uint8_t *a = (const uint8_t *)out.bytes, *b = (const uint8_t *)expected.bytes;
            for (NSUInteger i = 0; i < out.length && i < expected.length; ++i) worst = std::max(worst, std::abs((int)a[i] - (int)b[i]));
        }
        expect(n > 0, "no cases");
        expect(worst <= 1, "pasted frames within 1 LSB of runtime_py");
        NSDictionary *t = [avatar stageTimes];
        expect([[t objectForKey:@"crop"] doubleValue] > 0 && [[t objectForKey:@"fps"] doubleValue] > 0, "stage timings");
        std::printf("%s\npasted frames: worst difference %d LSB over %d cases; crop %.3f ms, paste %.3f ms per frame\n",
                    [avatar describe].UTF8String, worst, n, [[t objectForKey:@"crop"] doubleValue], [[t objectForKey:@"paste"] doubleValue]);

        // PCM in, frames out, in 20 ms chunks as AVAudioEngine delivers them.
        int pdims[8], pnd = 0;
        NSData *pcm = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:@"pcm.f32"]], pdims, &pnd);
        expect(pcm != nil && [avatar openAudioModel:dir threads:1 error:&error], "open the audio model");
        // the voice detector runs on MNN: this host build refuses in one line, and the session goes on
        expect(![avatar openVoiceDetector:[dir stringByAppendingPathComponent:@"vad.mnn"] firstFrame:0 frameCount:2 mouthFrames:nil error:&error] &&
                   error != nil,
               "rest in silence without an MNN engine must fail");
        error = nil;
        int rendered = 0, pcmWorst = 0;
        const NSUInteger chunk = 320 * sizeof(float);
        const NSUInteger chunks = pcm != nil ? (pcm.length + chunk - 1) / chunk : 0;
        for (NSUInteger c = 0; pcm != nil && c <= chunks; ++c) {  // the last round finishes the utterance
            const NSUInteger start = c * chunk;
            NSInteger pending = c < chunks
                                    ? [avatar pushPCM:[pcm subdataWithRange:NSMakeRange(start, std::min(chunk, pcm.length - start))] error:&error]
                                    : [avatar finishPCM:&error];
            expect(pending >= 0, "push PCM");
            for (; pending > 0; --pending, ++rendered) {
                NSInteger reference = [avatar nextReference];
                int dims[3], nd = 3;
                NSString *ref = [NSString stringWithFormat:@"ref_%d", (int)reference];
                NSData *bgr = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:[ref stringByAppendingString:@".u8"]]], dims, &nd);
                NSString *lms = [NSString stringWithContentsOfFile:[dir stringByAppendingPathComponent:[ref stringByAppendingString:@".lms"]]
                                                          encoding:NSUTF8StringEncoding
                                                             error:NULL];
                NSData *out = [avatar renderNext:bgr width:dims[1] height:dims[0] landmarks:lms mouthBGR:nil mouthLandmarks:nil loadMs:0.0 error:&error];
                int wd[3], wnd = 3;
                NSString *want = [NSString stringWithFormat:@"pcm_pasted_%d.u8", rendered];
                NSData *expected = payload([NSData dataWithContentsOfFile:[dir stringByAppendingPathComponent:want]], wd, &wnd);
                expect(out != nil && expected != nil && out.length == expected.length, "PCM frame");
                if (out == nil || expected == nil) break;
                const uint8_t *a = (const uint8_t *)out.bytes, *b = (const uint8_t *)expected.bytes;
                for (NSUInteger i = 0; i < out.length && i < expected.length; ++i) pcmWorst = std::max(pcmWorst, std::abs((int)a[i] - (int)b[i]));
            }
        }
        NSDictionary *audio = [avatar audioStats];
        expect(rendered > 0 && pcmWorst <= 1, "PCM frames within 1 LSB of runtime_py");
        std::printf("pcm: %d frames from %d samples, worst difference %d LSB, lookahead %.0f ms\n", rendered, pdims[0], pcmWorst,
                    [[audio objectForKey:@"lookahead_ms"] doubleValue]);

        if ([[NSFileManager defaultManager] fileExistsAtPath:[dir stringByAppendingPathComponent:@"idle_cases.txt"]]) idle(avatar, dir);

        // Errors come back as NSError with the core's one line.
        NSData *shortFrame = [NSData dataWithBytes:"abc" length:3];
        NSData *none = [avatar renderFrame:shortFrame width:5 height:5 landmarks:@"1 2\n" features:features featureFrames:fdims[0]
                                     index:0 loadMs:0.0 error:&error];
        expect(none == nil && [error.localizedDescription rangeOfString:@"frame bytes do not match"].location != NSNotFound,
               "wrong-size frame error");
        DHMAvatar *noMnn = [[DHMAvatar alloc] initWithManifestPath:[dir stringByAppendingPathComponent:@"manifest.json"]
                                                         modelPath:[dir stringByAppendingPathComponent:@"model.mnn"]
                                                        imageCount:images
                                                           threads:1
                                                              fp16:NO
                                                             error:&error];
        expect(noMnn == nil && [error.localizedDescription rangeOfString:@"no MNN engine"].location != NSNotFound, "no-MNN error");
        std::printf(failures ? "FAILED (%d)\n" : "OK\n", failures);
    }
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    // GCC has no @autoreleasepool; this host-only test (not the bridge) uses the pool class.
    NSAutoreleasePool *pool = [[NSAutoreleasePool alloc] init];
    int rc = run(argc, argv);
    [pool drain];
    return rc;
}
