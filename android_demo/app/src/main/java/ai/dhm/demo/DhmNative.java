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

    /** Per-frame ms of load, crop, pack, infer, paste, then frames per second. */
    public static native double[] nativeStageTimes(long handle);

    public static native String nativeDescribe(long handle);

    public static native void nativeClose(long handle);

    public static final String[] STAGES = {"load", "crop", "pack", "infer", "paste"};
}
