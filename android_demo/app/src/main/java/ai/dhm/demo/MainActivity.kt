package ai.dhm.demo

import android.app.Activity
import android.graphics.Bitmap
import android.media.MediaPlayer
import android.os.Bundle
import android.os.SystemClock
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import kotlin.concurrent.thread

/**
 * Plays the bundled clip: for each output frame, the core picks the reference frame
 * (ping-pong), crops, masks, runs the MNN model and pastes the mouth back, exactly as
 * dhm.runtime_py does; the audio plays alongside and frames are paced to the clip's fps.
 * The on-screen figures are the core's own per-stage timings.
 */
class MainActivity : Activity() {
    private lateinit var face: ImageView
    private lateinit var stats: TextView
    private lateinit var play: Button
    private var clip: Clip? = null
    private var handle = 0L
    @Volatile private var running = false
    private var player: MediaPlayer? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        face = findViewById(R.id.face)
        stats = findViewById(R.id.stats)
        play = findViewById(R.id.play)
        play.setOnClickListener { if (running) stop() else start() }
        thread(name = "dhm-load") { load() }
    }

    private fun load() {
        val message = try {
            val c = Clip.load(assets, filesDir)
            handle = DhmNative.nativeOpen(c.manifestJson, c.modelPath, c.frames, THREADS, false)
            clip = c
            "${DhmNative.nativeDescribe(handle)}\n${c.frames} frames at ${c.fps} fps, $THREADS threads"
        } catch (e: java.io.FileNotFoundException) {
            getString(R.string.missing_assets)
        } catch (e: Exception) {
            "error: ${e.message}"
        }
        runOnUiThread {
            stats.text = message
            play.isEnabled = clip != null
        }
    }

    private fun start() {
        val c = clip ?: return
        running = true
        play.text = getString(R.string.stop)
        if (c.hasAudio) {
            player = MediaPlayer().apply {
                c.openAudio().use { setDataSource(it.fileDescriptor, it.startOffset, it.length) }
                prepare()
                start()
            }
        }
        thread(name = "dhm-render") { renderLoop(c) }
    }

    private fun renderLoop(c: Clip) {
        // A native error (a bad frame, landmarks or model) is shown and stops playback; it
        // never takes the app down with an uncaught exception on the render thread.
        try {
            renderFrames(c)
        } catch (e: Exception) {
            val message = "error: ${e.message}"
            runOnUiThread { stats.text = message }
        }
        runOnUiThread { stop() }
    }

    private fun renderFrames(c: Clip) {
        val start = SystemClock.elapsedRealtime()
        var i = 0
        while (running && i < c.frames) {
            val reference = DhmNative.nativeReference(handle, i)
            val t0 = System.nanoTime()
            val frame = c.frame(reference)
            val landmarks = c.landmarks(reference)
            val loadMs = (System.nanoTime() - t0) / 1e6
            val bgr = DhmNative.nativeRender(handle, frame.bgr, frame.width, frame.height, landmarks,
                c.features, c.featureFrames, i, loadMs)
            val bitmap = toBitmap(bgr, frame.width, frame.height)
            val text = describe(DhmNative.nativeStageTimes(handle), i, c.frames)
            runOnUiThread {
                face.setImageBitmap(bitmap)
                stats.text = text
            }
            // Frame i is due at (i + 1) / fps seconds after the audio started.
            val due = (i + 1) * 1000L / c.fps
            val late = SystemClock.elapsedRealtime() - start
            if (due > late) Thread.sleep(due - late)
            i++
        }
    }

    private fun stop() {
        running = false
        player?.release()
        player = null
        play.text = getString(R.string.play)
    }

    override fun onDestroy() {
        stop()
        if (handle != 0L) DhmNative.nativeClose(handle)
        handle = 0L
        super.onDestroy()
    }

    companion object {
        const val THREADS = 2

        fun toBitmap(bgr: ByteArray, w: Int, h: Int): Bitmap {
            val argb = IntArray(w * h) { p ->
                val b = bgr[3 * p].toInt() and 0xff
                val g = bgr[3 * p + 1].toInt() and 0xff
                val r = bgr[3 * p + 2].toInt() and 0xff
                (0xff shl 24) or (r shl 16) or (g shl 8) or b
            }
            return Bitmap.createBitmap(argb, w, h, Bitmap.Config.ARGB_8888)
        }

        fun describe(t: DoubleArray, i: Int, n: Int): String {
            val stages = DhmNative.STAGES.indices.joinToString("  ") { "%s %.1f".format(DhmNative.STAGES[it], t[it]) }
            return "frame ${i + 1}/$n   %.1f fps (model pipeline)\nms per frame: $stages".format(t[5])
        }
    }
}
