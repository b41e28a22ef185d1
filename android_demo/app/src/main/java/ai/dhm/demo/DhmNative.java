package ai.dhm.demo;

/**
 * The dhm avatar core (C++, libdhm_jni.so) as seen from the JVM. Written in Java so the same
 * file serves the Kotlin app and the plain-Java host test that CI runs against the core.
 * Errors (bad manifest, wrong shapes, engine mismatch) arrive as IllegalArgumentException
 * with the core's one-line message.
 */
public final class DhmNative {
    static {
        System.loadLibrary("dhm_jni");
    }

    private DhmNative() {}

    /** Opens a session: the manifest's text, the model file (MNN), the clip's frame count. */
    public static native long nativeOpen(String manifestJson, String modelPath, int imageCount, int threads, boolean fp16);

    /** The reference frame for output frame {@code index} (Ultralight's ping-pong order). */
    public static native int nativeReference(long handle, int index);

    /** One output frame: BGR bytes of the reference frame in, BGR bytes of the painted frame out. */
    public static native byte[] nativeRender(long handle, byte[] bgr, int width, int height, String landmarks,
                                             float[] features, int featureFrames, int index, double loadMs);

    /** Attaches the manifest's audio model (audio_fp32.mnn): PCM in, frames out. */
    public static native void nativeOpenAudio(long handle, String audioModelPath, int threads);

    /** 16 kHz mono samples in [-1, 1]; returns how many frames are ready to render. */
    public static native int nativePushPcm(long handle, float[] samples, int count);

    /** The utterance ended; returns how many frames are ready to render. */
    public static native int nativeFinishPcm(long handle);

    /** The reference frame the next ready frame is painted on (ping-pong order). */
    public static native int nativeNextReference(long handle);

    /** Paints the next ready frame on the given reference frame; BGR bytes out. */
    public static native byte[] nativeRenderNext(long handle, byte[] bgr, int width, int height, String landmarks, double loadMs,
                                                 byte[] mouthBgr, int mouthWidth, int mouthHeight, String mouthLandmarks);

    /** The clip frame whose face is the generator's reference for the next frame; -1: none to load. */
    public static native int nativeNextMouthReference(long handle);

    /** Rests the mouth in silence: the voice detector (vad.mnn) and the clip frames shown in silence. */
    public static native void nativeRestInSilence(long handle, String vadPath, int[] footage, int[] mouth);

    /** Audio-model ms per frame, audio-to-frame lookahead ms, frames rendered, frames painted by the
     *  generator, and 1 while the mouth rests (0 while it speaks). */
    public static native double[] nativeAudioStats(long handle);

    /** Per-frame ms of load, crop, pack, infer, paste, then frames per second. */
    public static native double[] nativeStageTimes(long handle);

    public static native String nativeDescribe(long handle);

    public static native void nativeClose(long handle);

    public static final String[] STAGES = {"load", "crop", "pack", "infer", "paste"};
}
