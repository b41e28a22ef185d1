import AVFoundation
import Foundation
import UIKit

/// Audio in, frames out, on the phone: AVAudioEngine plays the bundled clip's audio (or
/// listens to the microphone) and every buffer it delivers goes to the core as 16 kHz mono
/// PCM; the manifest's audio model turns it into features and each frame that is complete
/// is rendered: the core picks the reference frame (ping-pong), crops, masks, runs the MNN
/// generator and pastes the mouth back, exactly as dhm.runtime_py does. On screen: fps,
/// audio-to-frame latency, per-stage ms including the audio model. A model without an
/// audio model replays the clip's precomputed features instead.
final class AvatarPlayer: ObservableObject {
    @Published var image: UIImage?
    @Published var status = "Loading the model and clip…"
    @Published var playing = false
    @Published var canListen = false

    static let threads = 2
    static let sampleRate = 16000.0
    private var avatar: DHMAvatar?
    private var clip: Clip?
    private var audio: AVAudioPlayer?
    private var engine: AVAudioEngine?
    private let queue = DispatchQueue(label: "ai.dhm.render")
    private var cancelled = false
    private var streamStart = Date()

    func load() {
        queue.async {
            do {
                let clip = try Clip.load()
                let avatar = try DHMAvatar(manifestPath: clip.manifestPath, modelPath: clip.modelPath, imageCount: clip.frames,
                                           threads: AvatarPlayer.threads, fp16: false)
                self.clip = clip
                self.avatar = avatar
                let audioText = clip.audioModelPath != nil ? "audio model: audio.mnn"
                    : "no audio model (features computed off the phone): replaying the clip's features"
                let text = "\(avatar.describe())\n\(clip.frames) frames at \(clip.fps) fps, \(AvatarPlayer.threads) threads\n\(audioText)"
                DispatchQueue.main.async {
                    self.status = text
                    self.canListen = clip.audioModelPath != nil
                }
            } catch {
                DispatchQueue.main.async { self.status = "error: \(error.localizedDescription)" }
            }
        }
    }

    func toggle() { playing ? stop() : start(microphone: false) }

    func listen() {
        if playing { stop(); return }
        AVAudioSession.sharedInstance().requestRecordPermission { granted in
            DispatchQueue.main.async {
                if granted { self.start(microphone: true) } else { self.status = "Microphone permission denied: the clip still plays." }
            }
        }
    }

    private func start(microphone: Bool) {
        guard let clip = clip, let avatar = avatar else { return }
        playing = true
        cancelled = false
        guard let audioModel = clip.audioModelPath else {
            if let url = clip.audioURL { audio = try? AVAudioPlayer(contentsOf: url); audio?.play() }
            queue.async { self.replayFeatures(clip: clip, avatar: avatar) }
            return
        }
        do {
            try avatar.openAudioModel(audioModel, threads: AvatarPlayer.threads)
            if let vad = clip.vadPath, let first = clip.idleFootage.first {  // one silent stretch of the clip
                let mouth = clip.idleMouth.map { Int32($0) }.withUnsafeBufferPointer { Data(buffer: $0) }
                try avatar.openVoiceDetector(vad, firstFrame: first, frameCount: clip.idleFootage.count, mouthFrames: mouth)
            }
            try microphone ? startMicrophone(clip: clip, avatar: avatar) : startClip(clip: clip, avatar: avatar)
        } catch {
            status = "error: \(error.localizedDescription)"
            stop()
        }
    }

    /// The clip's WAV through an AVAudioPlayerNode; a tap hands each played buffer to the core.
    private func startClip(clip: Clip, avatar: DHMAvatar) throws {
        guard let url = clip.audioURL else { throw Clip.error(4, "the clip has no audio.wav") }
        try AVAudioSession.sharedInstance().setCategory(.playback)
        try AVAudioSession.sharedInstance().setActive(true)
        let file = try AVAudioFile(forReading: url)  // app-assets writes 16 kHz mono
        let format = file.processingFormat
        guard format.sampleRate == AvatarPlayer.sampleRate, format.channelCount == 1,
              let buffer = AVAudioPCMBuffer(pcmFormat: format, frameCapacity: AVAudioFrameCount(file.length))
        else { throw Clip.error(5, "audio.wav is not 16 kHz mono") }
        try file.read(into: buffer)
        let engine = AVAudioEngine()
        let player = AVAudioPlayerNode()
        engine.attach(player)
        engine.connect(player, to: engine.mainMixerNode, format: format)
        player.installTap(onBus: 0, bufferSize: 320, format: format) { [weak self] tapped, _ in
            self?.push(tapped, avatar: avatar, clip: clip)
        }
        player.scheduleBuffer(buffer, at: nil, options: []) { [weak self] in
            self?.queue.async { self?.finish(avatar: avatar, clip: clip) }
        }
        try engine.start()
        streamStart = Date()
        player.play()
        self.engine = engine
    }

    /// The microphone at its own rate, converted to 16 kHz mono for the core.
    private func startMicrophone(clip: Clip, avatar: DHMAvatar) throws {
        try AVAudioSession.sharedInstance().setCategory(.record, mode: .measurement)
        try AVAudioSession.sharedInstance().setActive(true)
        let engine = AVAudioEngine()
        let input = engine.inputNode
        let inFormat = input.outputFormat(forBus: 0)
        guard let outFormat = AVAudioFormat(commonFormat: .pcmFormatFloat32, sampleRate: AvatarPlayer.sampleRate, channels: 1,
                                            interleaved: false),
              let converter = AVAudioConverter(from: inFormat, to: outFormat)
        else { throw Clip.error(6, "the microphone's \(inFormat) cannot be converted to 16 kHz mono") }
        input.installTap(onBus: 0, bufferSize: 1024, format: inFormat) { [weak self] buffer, _ in
            let capacity = AVAudioFrameCount(Double(buffer.frameLength) * AvatarPlayer.sampleRate / inFormat.sampleRate) + 16
            guard let out = AVAudioPCMBuffer(pcmFormat: outFormat, frameCapacity: capacity) else { return }
            var given = false
            var error: NSError?
            converter.convert(to: out, error: &error) { _, status in
                if given { status.pointee = .noDataNow; return nil }
                given = true
                status.pointee = .haveData
                return buffer
            }
            if error == nil { self?.push(out, avatar: avatar, clip: clip) }
        }
        try engine.start()
        streamStart = Date()
        self.engine = engine
    }

    /// PCM to the core on the render queue; then every frame that became ready.
    private func push(_ buffer: AVAudioPCMBuffer, avatar: DHMAvatar, clip: Clip) {
        guard let samples = buffer.floatChannelData?[0], buffer.frameLength > 0 else { return }
        let pcm = Data(bytes: samples, count: Int(buffer.frameLength) * MemoryLayout<Float>.size)
        queue.async {
            if self.cancelled { return }
            do {
                let pending = try avatar.pushPCM(pcm)
                self.renderReady(pending, avatar: avatar, clip: clip)
            } catch {
                self.fail(error)
            }
        }
    }

    private func finish(avatar: DHMAvatar, clip: Clip) {
        if cancelled { return }
        do {
            renderReady(try avatar.finishPCM(), avatar: avatar, clip: clip)
        } catch {
            fail(error)
        }
        DispatchQueue.main.async { self.stop() }
    }

    private func renderReady(_ pending: Int, avatar: DHMAvatar, clip: Clip) {
        for _ in 0..<max(0, pending) where !cancelled {
            do {
                let reference = avatar.nextReference()
                let t0 = Date()
                let frame = try clip.frame(reference)
                let landmarks = try clip.landmarks(reference)
                let mouthIndex = avatar.nextMouthReference()  // -1: in silence, or no separate one
                var mouthBGR: Data?
                var mouthLandmarks: String?
                if mouthIndex >= 0 {
                    mouthBGR = try clip.frame(mouthIndex).bgr
                    mouthLandmarks = try clip.landmarks(mouthIndex)
                }
                let loadMs = Date().timeIntervalSince(t0) * 1000
                let out = try avatar.renderNext(frame.bgr, width: frame.width, height: frame.height, landmarks: landmarks,
                                                mouthBGR: mouthBGR, mouthLandmarks: mouthLandmarks, loadMs: loadMs)
                let shown = Clip.image(bgr: out, width: frame.width, height: frame.height)
                let stats = avatar.audioStats()
                let rendered = (stats["frames"] as? NSNumber)?.intValue ?? 0
                // audio arrives in real time: frame k's audio ended k/fps s after the start
                let latencyMs = (Date().timeIntervalSince(streamStart) - Double(rendered) / Double(clip.fps)) * 1000
                let text = AvatarPlayer.describe(avatar.stageTimes(), audio: stats, latencyMs: latencyMs)
                DispatchQueue.main.async {
                    self.image = shown
                    self.status = text
                }
            } catch {
                fail(error)
                return
            }
        }
    }

    private func fail(_ error: Error) {
        cancelled = true
        DispatchQueue.main.async {
            self.status = "error: \(error.localizedDescription)"
            self.stop()
        }
    }

    private func stop() {
        cancelled = true
        audio?.stop()
        audio = nil
        engine?.stop()
        engine = nil
        playing = false
    }

    /// Models without an audio model: the clip's features, paced to the audio.
    private func replayFeatures(clip: Clip, avatar: DHMAvatar) {
        let start = Date()
        for i in 0..<clip.frames where !cancelled {
            do {
                let reference = avatar.reference(forFrame: i)
                let t0 = Date()
                let frame = try clip.frame(reference)
                let landmarks = try clip.landmarks(reference)
                let loadMs = Date().timeIntervalSince(t0) * 1000
                let out = try avatar.renderFrame(frame.bgr, width: frame.width, height: frame.height, landmarks: landmarks,
                                                 features: clip.features, featureFrames: clip.featureFrames, index: i, loadMs: loadMs)
                let shown = Clip.image(bgr: out, width: frame.width, height: frame.height)
                let text = AvatarPlayer.describe(avatar.stageTimes(), audio: nil, latencyMs: nil)
                DispatchQueue.main.async {
                    self.image = shown
                    self.status = text
                }
            } catch {
                fail(error)
                break
            }
            // Frame i is due at (i + 1) / fps seconds after the audio started.
            let due = Double(i + 1) / Double(clip.fps) - Date().timeIntervalSince(start)
            if due > 0 { Thread.sleep(forTimeInterval: due) }
        }
        DispatchQueue.main.async { self.stop() }
    }

    static func describe(_ times: [AnyHashable: Any], audio: [AnyHashable: Any]?, latencyMs: Double?) -> String {
        let value = { (d: [AnyHashable: Any], key: String) in (d[key] as? NSNumber)?.doubleValue ?? 0 }
        let stages = ["load", "crop", "pack", "infer", "paste"].map { String(format: "%@ %.1f", $0, value(times, $0)) }
            .joined(separator: "  ")
        guard let audio = audio else {
            return String(format: "%.1f fps (model pipeline)\nms per frame: %@", value(times, "fps"), stages)
        }
        let audioMs = value(audio, "audio_ms")
        let fps = 1000.0 / (1000.0 / max(value(times, "fps"), 1e-9) + audioMs)
        let state = value(audio, "idle") > 0.5 ? "idle (footage, no model)" : "speaking"
        let saved = Int(value(audio, "frames") - value(audio, "inferred"))
        return String(format: "frame %d   %.1f fps (audio model + pipeline)   %@\naudio to frame %.0f ms (lookahead %.0f ms)   inferences saved %d\nms per frame: audio %.1f  %@",
                      Int(value(audio, "frames")), fps, state, latencyMs ?? 0, value(audio, "lookahead_ms"), saved, audioMs, stages)
    }
}
