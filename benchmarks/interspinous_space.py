"""How bright is the interspinous space on a real sagittal T2w, and on the phantom's?

A posterior ligamentous complex (PLC) injury is fluid in the interspinous space; whether a model can see where that
space ends depends on how it differs from the muscle around it. This measures the space on the two real sagittal
T2w of ``../shared/data/real/`` and on phantom subjects, with one method on both sides:

* **interspinous boxes (real)**: hand-placed boxes in the midline interspinous spaces, between consecutive
  posterior elements, found on mid-sagittal views (``--figure`` draws them); canonical RAS voxel ranges in
  ``BOXES``. The Prisma crop (0.8 mm) shows three such spaces plainly; on errsm30 (1 mm, tilted neck) one space
  below C2's spinous process was identifiable, with less certainty;
* **interspinous space (phantom)**: the interspinous-ligament label, lesion voxels left out;
* **references, the same estimator on both sides** (``sim_to_real.estimate_masks``): CSF, and posterior fat (the
  brightest 5 % of T2w behind the cord, > 20 mm from it: subcutaneous, intermuscular and interspinous fat).
  ``isl_fat`` = interspinous median / posterior-fat median (0: as dark as cortical bone, 1: as bright as the
  brightest fat). On the phantom the label truth is also given (muscle and subcutaneous fat over CSF).

    python benchmarks/interspinous_space.py [--subjects 3] [--modes classic,faithful] [--figure DIR] [--out r.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import sim_to_real as s2r
from _common import emit, environment

#: real scan -> boxes (x0, x1, y0, y1, z0, z1) in canonical RAS voxels (x: R-L, y: P-A, z: I-S), end exclusive
BOXES = {
    "sct_prisma_sag_0p8mm": [(14, 19, 8, 18, 42, 48), (14, 19, 12, 26, 63, 66), (14, 19, 8, 20, 87, 93)],
    "sct_errsm30_sag_1mm": [(24, 27, 110, 122, 58, 72)],
}
ISL_L, MUSCLE_L = 15, 3


def _box_mask(shape, box) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[box[0]:box[1], box[2]:box[3], box[4]:box[5]] = True
    return m


def measure_real(name: str) -> dict:
    r = s2r.load_real(name)
    t2 = r["t2w"]
    est = s2r.estimate_masks(t2, r["cord"], r["spacing"])
    csf, fat = float(np.median(t2[est["csf"]])), float(np.median(t2[est["fat_posterior"]]))
    boxes = [float(np.median(t2[_box_mask(t2.shape, b)])) for b in BOXES[name]]
    isl = float(np.median(boxes))
    return {"boxes_over_csf": [round(v / csf, 3) for v in boxes], "isl_csf": round(isl / csf, 3),
            "posterior_fat_csf": round(fat / csf, 3), "isl_fat": round(isl / fat, 3)}


def measure_phantom(mode: str, n: int) -> dict:
    from synthseq.phantom import generate_subject

    rows = []
    for i in range(n):  # the seeds of sim_to_real.phantom_subjects; lesions are needed here, so generated again
        rec = generate_subject(f"sub-{i + 1:04d}", 1000 + i, preset="default", realism=mode, field_strength=3.0)
        aff = rec.t2w.affine
        t2, sp = s2r.canonical(rec.t2w.data, aff)
        lab = np.rint(s2r.canonical(rec.labels.data.astype(np.float32), aff)[0]).astype(int)
        les = s2r.canonical(rec.lesions.data.astype(np.float32), aff)[0] > 0.5
        est = s2r.estimate_masks(t2, lab == s2r.CORD_L, sp)
        csf, fat = float(np.median(t2[est["csf"]])), float(np.median(t2[est["fat_posterior"]]))
        med = {k: float(np.median(t2[(lab == c) & ~les])) for k, c in
               (("isl", ISL_L), ("muscle", MUSCLE_L), ("subcutaneous_fat", s2r.FAT_L))}
        rows.append({"isl_csf": med["isl"] / csf, "posterior_fat_csf": fat / csf, "isl_fat": med["isl"] / fat,
                     "muscle_csf": med["muscle"] / csf, "subcutaneous_fat_csf": med["subcutaneous_fat"] / csf})
    return {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]} | {"subjects": n}


def write_figure(out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(BOXES), figsize=(6 * len(BOXES), 6))
    for ax, (name, boxes) in zip(axes, BOXES.items()):
        t2 = s2r.load_real(name)["t2w"]
        x = boxes[0][0] + (boxes[0][1] - boxes[0][0]) // 2
        sl = t2[x].T  # rows: z (inferior at the bottom), columns: y (posterior on the left)
        ax.imshow(sl, cmap="gray", origin="lower", vmax=float(np.percentile(sl, 99.5)))
        for b in boxes:
            ax.add_patch(patches.Rectangle((b[2] - 0.5, b[4] - 0.5), b[3] - b[2], b[5] - b[4], fill=False, ec="r"))
        ax.set_title(f"{name}, x = {x}: interspinous boxes")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out_dir / "interspinous_boxes.png", dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=3, help="phantom subjects per mode (default 3)")
    parser.add_argument("--modes", default="classic,faithful", help="phantom realism modes (comma-separated)")
    parser.add_argument("--figure", default=None, help="write interspinous_boxes.png (the real boxes) here")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = {"benchmark": "interspinous_space", "environment": environment(),
              "real": {name: measure_real(name) for name in BOXES},
              "phantom": {m: measure_phantom(m, args.subjects) for m in args.modes.split(",")}}
    if args.figure:
        write_figure(Path(args.figure))
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
