"""Records scikit-image's PSNR and SSIM on the image pairs `tests/test_split_metrics_audio.py`
builds (`metric_pairs`), into tests/fixtures/skimage_metrics.json. scikit-image is not a dhm
dependency; run this once where it is installed (`pip install scikit-image`):

    python tests/tools/record_skimage_metrics.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metric_pairs import metric_pairs  # noqa: E402


def main() -> None:
    records = []
    for name, a, b in metric_pairs():
        # Wang et al. 2004 as dhm computes it: Gaussian window sigma 1.5, population
        # covariance, mean over the valid region, channels and images
        ssim = np.mean(
            [
                structural_similarity(
                    x.transpose(1, 2, 0),
                    y.transpose(1, 2, 0),
                    data_range=1.0,
                    channel_axis=-1,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                )
                for x, y in zip(a, b, strict=True)
            ]
        )
        records.append(
            {"pair": name, "psnr": float(peak_signal_noise_ratio(a, b, data_range=1.0)), "ssim": float(ssim)}
        )
    out = Path(__file__).resolve().parents[1] / "fixtures" / "skimage_metrics.json"
    out.write_text(json.dumps({"scikit-image": skimage.__version__, "pairs": records}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
