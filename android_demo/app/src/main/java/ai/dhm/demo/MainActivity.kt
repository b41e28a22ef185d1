package ai.dhm.demo

import android.Manifest
import android.app.Activity
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.AudioTrack
import android.media.MediaPlayer
import android.media.MediaRecorder
import android.os.Bundle
import android.os.SystemClock
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import kotlin.concurrent.thread

/**
 * Audio in, frames out, on the phone: the bundled clip's audio plays through AudioTrack
 * and, 20 ms at a time, goes to the core (the manifest's audio model turns it into
 * features; every frame that is complete is rendered); or the microphone (AudioRecord)
 * feeds the core the same way. For each frame the core picks the reference frame
 * (ping-pong), crops, masks, runs the MNN generator and pastes the mouth back, exactly as
 * dhm.runtime_py does. On screen: fps, audio-to-frame latency and per-stage ms including
 * the audio model. A model without an audio model replays the clip's features instead.
 */
class MainActivity : Activity() {
    private lateinit var face: ImageView
    private lateinit var stats: TextView
    private lateinit var play: Button
    private lateinit var mic: Button
    private var clip: Clip? = null
    private var handle = 0L
    @Volatile private var running = false
    private var player: MediaPlayer? = null
    private var worker: Thread? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        // Casts, not findViewById<T>: the generic form exists from API 26; these compile on both.
        face = findViewById(R.id.face) as ImageView
        stats = findViewById(R.id.stats) as TextView
        play = findViewById(R.id.play) as Button
        mic = findViewById(R.id.mic) as Button
        play.setOnClickListener { if (running) stop() else start(fromMic = false) }
        mic.setOnClickListener { if (running) stop() else startMic() }
        thread(name = "dhm-load") { load() }
    }

    private fun load() {
        val message = try {
            val c = Clip.load(assets, filesDir)
            handle = DhmNative.nativeOpen(c.manifestJson, c.modelPath, c.frames, THREADS, false)
            clip = c
            val audio = if (c.audioModelPath != null) "audio model: audio.mnn" else getString(R.string.no_audio_model)
            "${DhmNative.nativeDescribe(handle)}\n${c.frames} frames at ${c.fps} fps, $THREADS threads\n$audio"
        } catch (e: java.io.FileNotFoundException) {
            getString(R.string.missing_assets)
        } catch (e: Exception) {
            "error: ${e.message}"
        }
        runOnUiThread {
            stats.text = message
            play.isEnabled = clip != null
            mic.isEnabled = clip?.audioModelPath != null
        }
    }

    private fun startMic() {
        if (checkSelfPermission(Manifest.permission.RECORD_AUDIO) == PackageManager.PERMISSION_GRANTED) {
            start(fromMic = true)
        } else {
            requestPermissions(arrayOf(Manifest.permission.RECORD_AUDIO), MIC_REQUEST)
        }
    }

    override fun onRequestPermissionsResult(requestCode: Int, permissions: Array<String>, results: IntArray) {
        super.onRequestPermissionsResult(requestCode, permissions, results)
        if (requestCode != MIC_REQUEST) return
        if (results.isNotEmpty() && results[0] == PackageManager.PERMISSION_GRANTED) {
            start(fromMic = true)
        } else {
            stats.text = getString(R.string.no_mic)
        }
    }

    private fun start(fromMic: Boolean) {
        val c = clip ?: return
        running = true
        play.text = getString(R.string.stop)
        mic.isEnabled = false
        worker = thread(name = "dhm-stream") {
            // A native error (bad audio, frame, landmarks or model) is shown and stops
            // playback; it never takes the app down from the worker thread.
            try {
                when {
                    c.audioModelPath == null -> replayFeatures(c)
                    fromMic -> streamMicrophone(c)
                    else -> streamClip(c)
                }
            } catch (e: Exception) {
                val message = "error: ${e.message}"
                runOnUiThread { stats.text = message }
            }
            runOnUiThread { stop() }
        }
    }

    /** The bundled WAV through AudioTrack; each 20 ms chunk goes to the core as it is queued. */
    private fun streamClip(c: Clip) {
        val pcm = c.pcm16()
        openAudio(c)
        val minBuffer = AudioTrack.getMinBufferSize(Clip.SAMPLE_RATE, AudioFormat.CHANNEL_OUT_MONO, AudioFormat.ENCODING_PCM_16BIT)
        val track = AudioTrack.Builder()
            .setAudioFormat(
                AudioFormat.Builder().setSampleRate(Clip.SAMPLE_RATE).setChannelMask(AudioFormat.CHANNEL_OUT_MONO)
                    .setEncoding(AudioFormat.ENCODING_PCM_16BIT).build()
            )
            .setBufferSizeInBytes(maxOf(minBuffer, 2 * CHUNK * 8))
            .setTransferMode(AudioTrack.MODE_STREAM)
            .build()
        val pacer = Pacer()
        try {
            track.play()
            var start = 0
            while (running && start < pcm.size) {
                val end = minOf(pcm.size, start + CHUNK)
                // write() blocks while the track's buffer is full: the loop runs at the audio's pace
                track.write(pcm, start, end - start)
                renderReady(c, DhmNative.nativePushPcm(handle, toFloat(pcm, start, end), end - start), pacer)
                start = end
            }
            if (running) renderReady(c, DhmNative.nativeFinishPcm(handle), pacer)
        } finally {
            track.stop()
            track.release()
        }
    }

    /** The microphone at 16 kHz mono, 20 ms reads, until Stop. */
    @Suppress("MissingPermission")  // checked in startMic
    private fun streamMicrophone(c: Clip) {
        openAudio(c)
        val minBuffer = AudioRecord.getMinBufferSize(Clip.SAMPLE_RATE, AudioFormat.CHANNEL_IN_MONO, AudioFormat.ENCODING_PCM_16BIT)
        val record = AudioRecord(MediaRecorder.AudioSource.MIC, Clip.SAMPLE_RATE, AudioFormat.CHANNEL_IN_MONO,
            AudioFormat.ENCODING_PCM_16BIT, maxOf(minBuffer, 2 * CHUNK * 8))
        if (record.state != AudioRecord.STATE_INITIALIZED) throw IllegalStateException("the microphone cannot record at 16 kHz mono")
        val chunk = ShortArray(CHUNK)
        val pacer = Pacer()
        try {
            record.startRecording()
            while (running) {
                val n = record.read(chunk, 0, CHUNK)
                if (n < 0) throw IllegalStateException("microphone read failed ($n)")
                renderReady(c, DhmNative.nativePushPcm(handle, toFloat(chunk, 0, n), n), pacer)
            }
            renderReady(c, DhmNative.nativeFinishPcm(handle), pacer)
        } finally {
            record.stop()
            record.release()
        }
    }

    /** The audio model, and where the assets ship one, the voice detector that rests the mouth. */
    private fun openAudio(c: Clip) {
        DhmNative.nativeOpenAudio(handle, c.audioModelPath, THREADS)
        if (c.vadPath != null && c.idleFootage.isNotEmpty()) {
            DhmNative.nativeRestInSilence(handle, c.vadPath, c.idleFootage, c.idleMouth)
        }
    }

    /** Renders the frames the core says are ready, on the reference frames it asks for. */
    private fun renderReady(c: Clip, pending: Int, pacer: Pacer) {
        for (k in 0 until pending) {
            if (!running) return
            val reference = DhmNative.nativeNextReference(handle)
            val t0 = System.nanoTime()
            val frame = c.frame(reference)
            val landmarks = c.landmarks(reference)
            val mouthIndex = DhmNative.nativeNextMouthReference(handle)  // -1: in silence, or no separate one
            val mouth = if (mouthIndex >= 0) c.frame(mouthIndex) else null
            val mouthLandmarks = if (mouthIndex >= 0) c.landmarks(mouthIndex) else null
            val loadMs = (System.nanoTime() - t0) / 1e6
            val bgr = DhmNative.nativeRenderNext(
                handle, frame.bgr, frame.width, frame.height, landmarks, loadMs,
                mouth?.bgr, mouth?.width ?: 0, mouth?.height ?: 0, mouthLandmarks,
            )
            val bitmap = toBitmap(bgr, frame.width, frame.height)
            val audio = DhmNative.nativeAudioStats(handle)
            val text = describe(DhmNative.nativeStageTimes(handle), audio, pacer.latencyMs(audio[2].toInt(), c.fps))
            runOnUiThread {
                face.setImageBitmap(bitmap)
                stats.text = text
            }
        }
    }

    /** The clip's precomputed features (models without an audio model), paced to the audio. */
    private fun replayFeatures(c: Clip) {
        if (c.hasAudio) {
            player = MediaPlayer().apply {
                c.openAudio().use { setDataSource(it.fileDescriptor, it.startOffset, it.length) }
                prepare()
                start()
            }
        }
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
            val text = describe(DhmNative.nativeStageTimes(handle), null, null)
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
        mic.isEnabled = clip?.audioModelPath != null
    }

    override fun onDestroy() {
        stop()
        worker?.join(2000)
        if (handle != 0L) DhmNative.nativeClose(handle)
        handle = 0L
        super.onDestroy()
    }

    /**
     * Audio-to-frame latency of the frame just rendered: audio arrives in real time from the
     * start of the stream, so frame k's audio has ended k/fps seconds after the start; the
     * latency is the time from then until the frame is painted (the lookahead wait plus
     * compute). With AudioTrack the pushes can run ahead of playback by its buffer.
     */
    private class Pacer {
        private val startNs = System.nanoTime()
        fun latencyMs(rendered: Int, fps: Int): Double = (System.nanoTime() - startNs) / 1e6 - rendered * 1000.0 / fps
    }

    companion object {
        const val THREADS = 2
        const val CHUNK = 320  // 20 ms at 16 kHz
        const val MIC_REQUEST = 1

        fun toFloat(pcm: ShortArray, start: Int, end: Int): FloatArray =
            FloatArray(end - start) { pcm[start + it] / 32768f }

        fun toBitmap(bgr: ByteArray, w: Int, h: Int): Bitmap {
            val argb = IntArray(w * h) { p ->
                val b = bgr[3 * p].toInt() and 0xff
                val g = bgr[3 * p + 1].toInt() and 0xff
                val r = bgr[3 * p + 2].toInt() and 0xff
                (0xff shl 24) or (r shl 16) or (g shl 8) or b
            }
            return Bitmap.createBitmap(argb, w, h, Bitmap.Config.ARGB_8888)
        }

        /** Stage times (ms per frame, then fps); audio: audio-model ms, lookahead ms, frames. */
        fun describe(t: DoubleArray, audio: DoubleArray?, latencyMs: Double?): String {
            val stages = DhmNative.STAGES.indices.joinToString("  ") { "%s %.1f".format(DhmNative.STAGES[it], t[it]) }
            if (audio == null) return "%.1f fps (model pipeline)\nms per frame: $stages".format(t[5])
            val fps = 1000.0 / (1000.0 / t[5] + audio[0])
            val state = if (audio[4] > 0.5) "idle (footage, no model)" else "speaking"
            return ("frame %d   %.1f fps (audio model + pipeline)   %s\naudio to frame %.0f ms (lookahead %.0f ms)   " +
                "inferences saved %d\nms per frame: audio %.1f  $stages").format(
                audio[2].toInt(), fps, state, latencyMs ?: 0.0, audio[1], (audio[2] - audio[3]).toInt(), audio[0])
        }
    }
}
