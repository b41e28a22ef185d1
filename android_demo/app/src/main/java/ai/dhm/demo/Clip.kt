package ai.dhm.demo

import android.content.res.AssetManager
import android.graphics.BitmapFactory
import org.json.JSONObject
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The assets `dhm app-assets` writes into assets/dhm: model.mnn + manifest.json, the audio
 * model (audio.mnn) when the export has one, the voice detector (vad.mnn) that rests the mouth in
 * silence, and a clip (reference frames as JPEG, their landmarks, the audio as 16 kHz mono WAV,
 * clip.json naming the frames shown in silence; features.f32 only for models without an audio model).
 */
class Clip private constructor(
    val manifestJson: String,
    val modelPath: String,
    val audioModelPath: String?,
    val vadPath: String?,
    val idleFootage: IntArray,
    val idleMouth: IntArray,  // open-mouthed frames: the generator's reference while it paints the footage
    val frames: Int,
    val fps: Int,
    val features: FloatArray,
    val featureFrames: Int,
    val hasAudio: Boolean,
    private val assets: AssetManager,
) {
    class Frame(val bgr: ByteArray, val width: Int, val height: Int)

    /** Decodes reference frame [i] to BGR bytes, the layout the core (and OpenCV) use. */
    fun frame(i: Int): Frame {
        val bitmap = assets.open("$ROOT/clip/$i.jpg").use { BitmapFactory.decodeStream(it) }
            ?: throw IllegalStateException("clip frame $i.jpg does not decode")
        val w = bitmap.width
        val h = bitmap.height
        val argb = IntArray(w * h)
        bitmap.getPixels(argb, 0, w, 0, 0, w, h)
        bitmap.recycle()
        val bgr = ByteArray(w * h * 3)
        for (p in argb.indices) {
            val c = argb[p]
            bgr[3 * p] = (c and 0xff).toByte()
            bgr[3 * p + 1] = ((c shr 8) and 0xff).toByte()
            bgr[3 * p + 2] = ((c shr 16) and 0xff).toByte()
        }
        return Frame(bgr, w, h)
    }

    fun landmarks(i: Int): String = assets.open("$ROOT/clip/$i.lms").bufferedReader().use { it.readText() }

    fun openAudio() = assets.openFd("$ROOT/clip/audio.wav")

    /** The clip's audio as 16-bit PCM samples (app-assets writes 16 kHz mono PCM16). */
    fun pcm16(): ShortArray {
        val raw = assets.open("$ROOT/clip/audio.wav").use { it.readBytes() }
        val buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN)
        // RIFF chunks: find "fmt " (16 kHz, 1 channel, 16 bit) and "data"
        var pos = 12
        var data: ShortArray? = null
        while (pos + 8 <= raw.size) {
            val id = String(raw, pos, 4, Charsets.US_ASCII)
            val size = buf.getInt(pos + 4)
            if (id == "fmt ") {
                val channels = buf.getShort(pos + 10).toInt()
                val rate = buf.getInt(pos + 12)
                val bits = buf.getShort(pos + 22).toInt()
                if (channels != 1 || rate != SAMPLE_RATE || bits != 16)
                    throw IllegalStateException("audio.wav is $rate Hz, $channels channel(s), $bits bit; the core takes 16 kHz mono")
            } else if (id == "data") {
                val n = minOf(size, raw.size - pos - 8) / 2
                data = ShortArray(n) { buf.getShort(pos + 8 + 2 * it) }
            }
            pos += 8 + size + (size and 1)
        }
        return data ?: throw IllegalStateException("audio.wav has no data chunk")
    }

    companion object {
        const val ROOT = "dhm"
        const val SAMPLE_RATE = 16000

        fun load(assets: AssetManager, filesDir: File): Clip {
            val manifest = assets.open("$ROOT/manifest.json").bufferedReader().use { it.readText() }
            // MNN loads models from a path: copy the model out of the APK once.
            val model = File(filesDir, "model.mnn")
            assets.open("$ROOT/model.mnn").use { input -> model.outputStream().use { input.copyTo(it) } }
            val info = JSONObject(assets.open("$ROOT/clip/clip.json").bufferedReader().use { it.readText() })
            var audioModel: String? = null
            var vad: String? = null
            var footage = IntArray(0)
            var mouth = IntArray(0)
            var values = FloatArray(0)
            var featureFrames = 0
            if (info.optBoolean("pcm", false)) {
                val audio = File(filesDir, "audio.mnn")
                assets.open("$ROOT/audio.mnn").use { input -> audio.outputStream().use { input.copyTo(it) } }
                audioModel = audio.absolutePath
                val idle = info.optJSONObject("idle_footage")
                if (idle != null) {
                    val file = File(filesDir, "vad.mnn")
                    assets.open("$ROOT/vad.mnn").use { input -> file.outputStream().use { input.copyTo(it) } }
                    vad = file.absolutePath
                    val list = idle.getJSONArray("frames")
                    footage = IntArray(list.length()) { list.getInt(it) }
                    val open = idle.optJSONArray("mouth")
                    mouth = if (open == null) IntArray(0) else IntArray(open.length()) { open.getInt(it) }
                }
            } else {  // a model fed features computed off the phone
                val raw = assets.open("$ROOT/clip/features.f32").use { it.readBytes() }
                val buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN)
                val ndim = buf.int
                val dims = IntArray(ndim) { buf.int }
                values = FloatArray(dims.fold(1) { a, d -> a * d })
                buf.asFloatBuffer().get(values)
                featureFrames = dims[0]
            }
            return Clip(manifest, model.absolutePath, audioModel, vad, footage, mouth, info.getInt("frames"), info.getInt("fps"),
                values, featureFrames, info.optBoolean("audio", false), assets)
        }
    }
}
