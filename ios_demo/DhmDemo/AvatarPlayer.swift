import AVFoundation
import Foundation
import UIKit

/// Plays the bundled clip: per output frame the core picks the reference frame (ping-pong),
/// crops, masks, runs the MNN model and pastes the mouth back, exactly as dhm.runtime_py
/// does; the audio plays alongside and frames are paced to the clip's fps.
final class AvatarPlayer: ObservableObject {
    @Published var image: UIImage?
    @Published var status = "Loading the model and clip…"
    @Published var playing = false

    static let threads = 2
    private var avatar: DHMAvatar?
    private var clip: Clip?
    private var audio: AVAudioPlayer?
    private let queue = DispatchQueue(label: "ai.dhm.render")
    private var cancelled = false

    func load() {
        queue.async {
            do {
                let clip = try Clip.load()
                let avatar = try DHMAvatar(manifestPath: clip.manifestPath, modelPath: clip.modelPath, imageCount: clip.frames,
                                           threads: AvatarPlayer.threads, fp16: false)
                self.clip = clip
                self.avatar = avatar
                let text = "\(avatar.describe())\n\(clip.frames) frames at \(clip.fps) fps, \(AvatarPlayer.threads) threads"
                DispatchQueue.main.async { self.status = text }
            } catch {
                DispatchQueue.main.async { self.status = "error: \(error.localizedDescription)" }
            }
        }
    }

    func toggle() { playing ? stop() : start() }

    private func start() {
        guard let clip = clip, let avatar = avatar else { return }
        playing = true
        cancelled = false
        if let url = clip.audioURL { audio = try? AVAudioPlayer(contentsOf: url); audio?.play() }
        queue.async { self.renderLoop(clip: clip, avatar: avatar) }
    }

    private func stop() {
        cancelled = true
        audio?.stop()
        audio = nil
        playing = false
    }

    private func renderLoop(clip: Clip, avatar: DHMAvatar) {
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
                let text = AvatarPlayer.describe(avatar.stageTimes(), frame: i, of: clip.frames)
                DispatchQueue.main.async {
                    self.image = shown
                    self.status = text
                }
            } catch {
                DispatchQueue.main.async { self.status = "error: \(error.localizedDescription)" }
                break
            }
            // Frame i is due at (i + 1) / fps seconds after the audio started.
            let due = Double(i + 1) / Double(clip.fps) - Date().timeIntervalSince(start)
            if due > 0 { Thread.sleep(forTimeInterval: due) }
        }
        DispatchQueue.main.async { self.stop() }
    }

    static func describe(_ times: [AnyHashable: Any], frame i: Int, of n: Int) -> String {
        let value = { (key: String) in (times[key] as? NSNumber)?.doubleValue ?? 0 }
        let stages = ["load", "crop", "pack", "infer", "paste"].map { String(format: "%@ %.1f", $0, value($0)) }.joined(separator: "  ")
        return String(format: "frame %d/%d   %.1f fps (model pipeline)\nms per frame: %@", i + 1, n, value("fps"), stages)
    }
}
