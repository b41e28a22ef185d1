package ai.dhm.demo;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;

/**
 * The JNI glue on the JVM, without Android: libdhm_jni.so built for this host (core without
 * MNN, so the model path is a golden folder whose recorded MNN outputs are replayed) driven
 * exactly as MainActivity drives it. Usage: java -Djava.library.path=LIB ai.dhm.demo.DhmNativeHostTest GOLDEN_DIR
 */
public final class DhmNativeHostTest {
    private static int failures = 0;

    private static void expect(boolean ok, String what) {
        if (!ok) {
            failures++;
            System.out.println("FAIL: " + what);
        }
    }

    private static ByteBuffer read(Path p) throws IOException {
        return ByteBuffer.wrap(Files.readAllBytes(p)).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** A *.u8 file: int32 h, w, c, then bytes. Returns {h, w} and fills the bytes. */
    private static byte[] readU8(Path p, int[] hw) throws IOException {
        ByteBuffer b = read(p);
        hw[0] = b.getInt();
        hw[1] = b.getInt();
        int c = b.getInt();
        byte[] data = new byte[hw[0] * hw[1] * c];
        b.get(data);
        return data;
    }

    /** A *.f32 file: int32 ndim, dims, then floats. Returns the values; dims[0] goes to first[0]. */
    private static float[] readF32(Path p, int[] first) throws IOException {
        ByteBuffer b = read(p);
        int nd = b.getInt();
        int n = 1;
        for (int i = 0; i < nd; i++) {
            int d = b.getInt();
            if (i == 0) first[0] = d;
            n *= d;
        }
        float[] out = new float[n];
        b.asFloatBuffer().get(out);
        return out;
    }

    static int[] ints(Path file) throws IOException {
        return Files.readAllLines(file).stream().filter(l -> !l.isBlank()).mapToInt(l -> Integer.parseInt(l.trim())).toArray();
    }

    // Speech with silence around it, resting the mouth as MainActivity does: the detector's and
    // the models' recorded runs replayed (the golden folder stands in for vad.mnn), frames and
    // decisions as runtime_py's: footage in silence, an open-mouthed reference face in speech.
    static void idle(long h, Path dir) throws IOException {
        float[] pcm = readF32(dir.resolve("idle_pcm.f32"), new int[1]);
        int[] shares = ints(dir.resolve("idle_shares.txt"));
        DhmNative.nativeOpenAudio(h, dir.toString(), 1);  // a new stream
        DhmNative.nativeRestInSilence(h, dir.toString(), ints(dir.resolve("idle_footage.txt")), ints(dir.resolve("idle_mouth.txt")));
        int rendered = 0, worst = 0, silent = 0, chunks = (pcm.length + 319) / 320;
        for (int c = 0; c <= chunks; c++) {
            int pending = c < chunks
                ? DhmNative.nativePushPcm(h, java.util.Arrays.copyOfRange(pcm, 320 * c, Math.min(pcm.length, 320 * c + 320)),
                    Math.min(320, pcm.length - 320 * c))
                : DhmNative.nativeFinishPcm(h);
            for (; pending > 0; pending--, rendered++) {
                int reference = DhmNative.nativeNextReference(h);
                int mouth = DhmNative.nativeNextMouthReference(h);
                int[] hw = new int[2];
                byte[] bgr = readU8(dir.resolve("ref_" + reference + ".u8"), hw);
                String lms = new String(Files.readAllBytes(dir.resolve("ref_" + reference + ".lms")), StandardCharsets.UTF_8);
                byte[] mouthBgr = mouth < 0 ? null : readU8(dir.resolve("ref_" + mouth + ".u8"), new int[2]);
                String mouthLms = mouth < 0 ? null
                    : new String(Files.readAllBytes(dir.resolve("ref_" + mouth + ".lms")), StandardCharsets.UTF_8);
                byte[] out = DhmNative.nativeRenderNext(h, bgr, hw[1], hw[0], lms, 0.0, mouthBgr, hw[1], hw[0], mouthLms);
                byte[] want = readU8(dir.resolve("idle_pasted_" + rendered + ".u8"), new int[2]);
                for (int i = 0; i < Math.min(out.length, want.length); i++) worst = Math.max(worst, Math.abs((out[i] & 0xff) - (want[i] & 0xff)));
                double[] a = DhmNative.nativeAudioStats(h);
                boolean resting = a[4] == 1.0;
                expect(rendered < shares.length && resting == (shares[rendered] == 0) && (mouth < 0) == resting,
                    "idle frame " + rendered + ": resting " + resting + ", mouth reference " + mouth);
                silent += resting ? 1 : 0;
            }
        }
        double[] a = DhmNative.nativeAudioStats(h);
        expect(rendered == shares.length && worst <= 1, "idle: " + rendered + " of " + shares.length + " frames, worst " + worst + " LSB");
        expect(silent > 0 && (int) a[3] == rendered - silent, "idle: " + silent + " silent, " + a[3] + " painted");
        System.out.println(String.format("idle: %d frames, %d footage without a model, worst difference %d LSB", rendered, silent, worst));
    }

    public static void main(String[] args) throws IOException {
        Path dir = Paths.get(args[0]);
        String manifest = new String(Files.readAllBytes(dir.resolve("manifest.json")), StandardCharsets.UTF_8);
        int[] nFeat = new int[1];
        float[] features = readF32(dir.resolve("features.f32"), nFeat);
        List<String> cases = Files.readAllLines(dir.resolve("cases.txt"));
        cases.removeIf(String::isBlank);
        if (cases.isEmpty()) {
            // A golden folder with nothing to compare is broken, not a pass.
            System.out.println("FAIL: cases.txt lists no frames to render");
            System.out.println("FAILED (1)");
            System.exit(1);
        }
        int images = Integer.parseInt(args.length > 1 ? args[1] : "0");

        long h = DhmNative.nativeOpen(manifest, dir.toString(), images, 1, false);
        expect(DhmNative.nativeDescribe(h).contains("replay"), "describe names the engine: " + DhmNative.nativeDescribe(h));
        int worst = 0;
        for (String line : cases) {
            String[] f = line.trim().split("\\s+");
            int index = Integer.parseInt(f[0]);
            int reference = Integer.parseInt(f[1]);
            if (images > 0) expect(DhmNative.nativeReference(h, index) == reference, "ping-pong reference of frame " + index);
            int[] hw = new int[2];
            byte[] bgr = readU8(dir.resolve("ref_" + reference + ".u8"), hw);
            String lms = new String(Files.readAllBytes(dir.resolve("ref_" + reference + ".lms")), StandardCharsets.UTF_8);
            byte[] out = DhmNative.nativeRender(h, bgr, hw[1], hw[0], lms, features, nFeat[0], index, 0.0);
            byte[] want = readU8(dir.resolve("pasted_" + index + ".u8"), new int[2]);
            expect(out.length == want.length, "frame size");
            for (int i = 0; i < Math.min(out.length, want.length); i++) worst = Math.max(worst, Math.abs((out[i] & 0xff) - (want[i] & 0xff)));
        }
        expect(worst <= 1, "pasted frames within 1 LSB of runtime_py (worst " + worst + ")");
        double[] t = DhmNative.nativeStageTimes(h);
        expect(t.length == 6 && t[1] > 0 && t[5] > 0, "stage timings");
        StringBuilder timing = new StringBuilder();
        for (int i = 0; i < 5; i++) timing.append(String.format("%s %.3f ms  ", DhmNative.STAGES[i], t[i]));
        System.out.println("per frame: " + timing + String.format("= %.1f fps", t[5]));
        System.out.println("pasted frames: worst difference " + worst + " LSB over " + cases.size() + " cases");

        // PCM in, frames out, as MainActivity streams the clip's audio: 20 ms chunks; the app
        // loads each frame the core asks for. Frames must equal runtime_py's PcmSession.
        if (Files.exists(dir.resolve("pcm_cases.txt"))) {
            float[] pcm = readF32(dir.resolve("pcm.f32"), new int[1]);
            List<String> pcmCases = Files.readAllLines(dir.resolve("pcm_cases.txt"));
            pcmCases.removeIf(String::isBlank);
            DhmNative.nativeOpenAudio(h, dir.toString(), 1);
            try {  // the voice detector runs on MNN: this host build says so in one line, and the session goes on
                DhmNative.nativeRestInSilence(h, dir.resolve("vad.mnn").toString(), new int[] {0, 1}, new int[] {1});
                expect(false, "resting the mouth without an MNN engine must throw");
            } catch (IllegalArgumentException e) {
                expect(e.getMessage().contains("MNN") || e.getMessage().contains("vad"), "rest in silence: " + e.getMessage());
            }
            int rendered = 0;
            int pcmWorst = 0;
            int chunks = (pcm.length + 319) / 320;
            for (int c = 0; c <= chunks; c++) {  // the last round finishes the utterance
                int start = 320 * c;
                int pending;
                if (c < chunks) {
                    float[] chunk = java.util.Arrays.copyOfRange(pcm, start, Math.min(pcm.length, start + 320));
                    pending = DhmNative.nativePushPcm(h, chunk, chunk.length);
                } else {
                    pending = DhmNative.nativeFinishPcm(h);
                }
                for (; pending > 0; pending--, rendered++) {
                    int reference = DhmNative.nativeNextReference(h);
                    expect(rendered < pcmCases.size() && pcmCases.get(rendered).trim().endsWith(" " + reference),
                        "PCM frame " + rendered + " reference " + reference);
                    int[] hw = new int[2];
                    byte[] bgr = readU8(dir.resolve("ref_" + reference + ".u8"), hw);
                    String lms = new String(Files.readAllBytes(dir.resolve("ref_" + reference + ".lms")), StandardCharsets.UTF_8);
                    byte[] out = DhmNative.nativeRenderNext(h, bgr, hw[1], hw[0], lms, 0.0, null, 0, 0, null);
                    byte[] want = readU8(dir.resolve("pcm_pasted_" + rendered + ".u8"), new int[2]);
                    expect(out.length == want.length, "PCM frame size");
                    for (int i = 0; i < Math.min(out.length, want.length); i++)
                        pcmWorst = Math.max(pcmWorst, Math.abs((out[i] & 0xff) - (want[i] & 0xff)));
                }
            }
            expect(rendered == pcmCases.size(), "PCM frames: " + rendered + " of " + pcmCases.size());
            expect(pcmWorst <= 1, "PCM frames within 1 LSB of runtime_py (worst " + pcmWorst + ")");
            double[] a = DhmNative.nativeAudioStats(h);
            System.out.println(String.format("pcm: %d frames from %d samples, worst difference %d LSB, lookahead %.0f ms",
                rendered, pcm.length, pcmWorst, a[1]));
            // without a voice detector every frame is painted and none is idle
            expect(a.length == 5 && (int) a[3] == rendered && a[4] == 0.0, "audio stats: painted " + a[3] + " of " + rendered);
            try {
                DhmNative.nativePushPcm(h, pcm, 10);
                expect(false, "PCM after finish must throw");
            } catch (IllegalArgumentException e) {
                expect(e.getMessage().contains("after finish"), "after-finish message: " + e.getMessage());
            }
            if (Files.exists(dir.resolve("idle_cases.txt"))) idle(h, dir);
        } else {
            expect(false, "the golden folder has no PCM cases (its manifest lists no audio model)");
        }

        // Errors cross the boundary as one-line exceptions.
        try {
            byte[] tooShort = new byte[10];
            DhmNative.nativeRender(h, tooShort, 5, 5, "1 2\n", features, nFeat[0], 0, 0.0);
            expect(false, "a wrong-size frame must throw");
        } catch (IllegalArgumentException e) {
            expect(e.getMessage().contains("frame bytes do not match width x height x 3"), "wrong input message: " + e.getMessage());
        }
        DhmNative.nativeClose(h);
        try {
            DhmNative.nativeOpen(manifest.replace("dhm.manifest/1", "dhm.manifest/7"), dir.toString(), images, 1, false);
            expect(false, "a manifest of another schema must be refused");
        } catch (IllegalArgumentException e) {
            expect(e.getMessage().contains("schema 'dhm.manifest/7'"), "schema message: " + e.getMessage());
        }
        try {
            DhmNative.nativeOpen(manifest, dir.resolve("model.mnn").toString(), images, 1, false);
            expect(false, "a host build has no MNN engine");
        } catch (IllegalArgumentException e) {
            expect(e.getMessage().contains("no MNN engine"), "no-MNN message: " + e.getMessage());
        }
        System.out.println(failures == 0 ? "OK" : "FAILED (" + failures + ")");
        System.exit(failures == 0 ? 0 : 1);
    }
}
