import Foundation
import UIKit

/// The assets `dhm app-assets` writes into the app bundle's `dhm` folder: model.mnn and
/// manifest.json, audio.mnn (the audio model) when the export has one, vad.mnn (the voice
/// detector) with the clip frames shown in silence, and a clip (reference
/// frames as JPEG, landmarks, 16 kHz mono audio WAV; features .f32 only without an audio model).
struct Clip {
    let manifestPath: String
    let modelPath: String
    let audioModelPath: String?
    let vadPath: String?        // the voice detector that rests the mouth in silence
    let idleFootage: [Int]      // the clip frames shown in silence
    let idleMouth: [Int]        // open-mouthed frames: the generator's reference while it paints the footage
    let frames: Int
    let fps: Int
    let features: Data      // float32 values, little-endian
    let featureFrames: Int
    let audioURL: URL?
    let root: URL

    struct Frame {
        let bgr: Data
        let width: Int
        let height: Int
    }

    static func load() throws -> Clip {
        guard let root = Bundle.main.url(forResource: "dhm", withExtension: nil) else {
            throw NSError(domain: DHMErrorDomain, code: 2,
                          userInfo: [NSLocalizedDescriptionKey: "no dhm assets in the bundle: run `dhm app-assets` (see README.md)"])
        }
        let clipDir = root.appendingPathComponent("clip")
        let info = try JSONSerialization.jsonObject(with: Data(contentsOf: clipDir.appendingPathComponent("clip.json"))) as? [String: Any] ?? [:]
        let pcm = info["pcm"] as? Bool ?? false
        var features = Data()
        var featureFrames = 0
        if !pcm {  // a model fed features computed off the phone
            let raw = try Data(contentsOf: clipDir.appendingPathComponent("features.f32"))
            let ndim = raw.withUnsafeBytes { Int($0.load(fromByteOffset: 0, as: Int32.self).littleEndian) }
            featureFrames = raw.withUnsafeBytes { Int($0.load(fromByteOffset: 4, as: Int32.self).littleEndian) }
            features = raw.subdata(in: (4 + 4 * ndim)..<raw.count)
        }
        let audio = clipDir.appendingPathComponent("audio.wav")
        let idleInfo = info["idle_footage"] as? [String: Any]
        let idle = idleInfo?["frames"] as? [Int] ?? []
        return Clip(manifestPath: root.appendingPathComponent("manifest.json").path,
                    modelPath: root.appendingPathComponent("model.mnn").path,
                    audioModelPath: pcm ? root.appendingPathComponent("audio.mnn").path : nil,
                    vadPath: pcm && !idle.isEmpty ? root.appendingPathComponent("vad.mnn").path : nil,
                    idleFootage: idle,
                    idleMouth: idleInfo?["mouth"] as? [Int] ?? [],
                    frames: info["frames"] as? Int ?? 0, fps: info["fps"] as? Int ?? 25,
                    features: features, featureFrames: featureFrames,
                    audioURL: FileManager.default.fileExists(atPath: audio.path) ? audio : nil, root: clipDir)
    }

    static func error(_ code: Int, _ message: String) -> NSError {
        NSError(domain: DHMErrorDomain, code: code, userInfo: [NSLocalizedDescriptionKey: message])
    }

    func landmarks(_ i: Int) throws -> String {
        try String(contentsOf: root.appendingPathComponent("\(i).lms"), encoding: .utf8)
    }

    /// Decodes reference frame `i` to BGR bytes, the layout the core (and OpenCV) use.
    func frame(_ i: Int) throws -> Frame {
        guard let image = UIImage(contentsOfFile: root.appendingPathComponent("\(i).jpg").path)?.cgImage else {
            throw NSError(domain: DHMErrorDomain, code: 3, userInfo: [NSLocalizedDescriptionKey: "clip frame \(i).jpg does not decode"])
        }
        let w = image.width, h = image.height
        var rgba = [UInt8](repeating: 0, count: w * h * 4)
        // The context draws through its pointer: it must live inside the closure that keeps it valid.
        let drawn = rgba.withUnsafeMutableBytes { (pixels: UnsafeMutableRawBufferPointer) -> Bool in
            guard let ctx = CGContext(data: pixels.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                      space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)
            else { return false }
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        guard drawn else { throw Clip.error(3, "clip frame \(i).jpg: no bitmap context for \(w)x\(h)") }
        var bgr = Data(count: w * h * 3)
        bgr.withUnsafeMutableBytes { (out: UnsafeMutableRawBufferPointer) in
            for p in 0..<(w * h) {
                out[3 * p] = rgba[4 * p + 2]
                out[3 * p + 1] = rgba[4 * p + 1]
                out[3 * p + 2] = rgba[4 * p]
            }
        }
        return Frame(bgr: bgr, width: w, height: h)
    }

    static func image(bgr: Data, width: Int, height: Int) -> UIImage? {
        var rgba = [UInt8](repeating: 255, count: width * height * 4)
        bgr.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
            for p in 0..<(width * height) {
                rgba[4 * p] = src[3 * p + 2]
                rgba[4 * p + 1] = src[3 * p + 1]
                rgba[4 * p + 2] = src[3 * p]
            }
        }
        guard let provider = CGDataProvider(data: Data(rgba) as CFData),
              let cg = CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: width * 4,
                               space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
                               provider: provider, decode: nil, shouldInterpolate: true, intent: .defaultIntent)
        else { return nil }
        return UIImage(cgImage: cg)
    }
}
