package ai.dhm.demo

import android.content.res.AssetManager
import android.graphics.BitmapFactory
import org.json.JSONObject
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The assets `dhm app-assets` writes into assets/dhm: model.mnn + manifest.json, and a clip
 * (reference frames as JPEG, their landmarks, the audio features as .f32, the audio as WAV).
 */
class Clip private constructor(
    val manifestJson: String,
    val modelPath: String,
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

    companion object {
        const val ROOT = "dhm"

        fun load(assets: AssetManager, filesDir: File): Clip {
            val manifest = assets.open("$ROOT/manifest.json").bufferedReader().use { it.readText() }
            // MNN loads models from a path: copy the model out of the APK once.
            val model = File(filesDir, "model.mnn")
            assets.open("$ROOT/model.mnn").use { input -> model.outputStream().use { input.copyTo(it) } }
            val info = JSONObject(assets.open("$ROOT/clip/clip.json").bufferedReader().use { it.readText() })
            val raw = assets.open("$ROOT/clip/features.f32").use { it.readBytes() }
            val buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN)
            val ndim = buf.int
            val dims = IntArray(ndim) { buf.int }
            val values = FloatArray(dims.fold(1) { a, d -> a * d })
            buf.asFloatBuffer().get(values)
            return Clip(manifest, model.absolutePath, info.getInt("frames"), info.getInt("fps"), values, dims[0],
                info.optBoolean("audio", false), assets)
        }
    }
}
