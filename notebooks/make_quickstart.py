"""Regenerate 01_quickstart.ipynb from the cells below (keeps the notebook diff-friendly and reviewable).

    python notebooks/make_quickstart.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# synthseq quickstart: T2w -> pseudo-STIR on the phantom

This notebook walks the main path in small steps on the **tiny** phantom preset, so it runs on a laptop CPU in a
few minutes: generate paired T2w/STIR subjects, train pix2pix briefly, synthesize pseudo-STIR for a held-out subject,
and evaluate it against the real STIR (image-level and lesion-level), next to two baselines.

`STEPS` is small so the notebook also runs in the test suite; raise it (e.g. 1500) for a model worth looking at."""),
    ("code", """import json, os, tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import synthseq
from synthseq import load_volume
from synthseq.config import load_config
from synthseq.data import SagittalView
from synthseq.demo import CONFIG_DIR
from synthseq.evaluation import evaluate_paths
from synthseq.phantom import generate_dataset
from synthseq.synthesis import Synthesizer
from synthseq.training import run

STEPS = int(os.environ.get("SYNTHSEQ_NOTEBOOK_STEPS", "40"))
work = Path(tempfile.mkdtemp(prefix="synthseq-quickstart-"))
print("synthseq", synthseq.__version__, "working in", work)"""),
    ("md", """## 1. A phantom cohort
Each subject has a T2w and a STIR on the same grid, tissue labels, injury labels and a row of clinical data."""),
    ("code", """phantom = generate_dataset(work / "phantom", subjects=10, seed=0, preset="tiny", preview=True)
print(pd.read_csv(phantom / "cohort.csv").head())
plt.figure(figsize=(10, 6)); plt.imshow(plt.imread(phantom / "preview.png")); plt.axis("off");"""),
    ("md", """## 2. Train pix2pix
The config is a typed dataclass loaded from YAML; overrides use dotted keys, exactly as on the command line."""),
    ("code", """cfg = load_config(CONFIG_DIR / "pix2pix_cpu_tiny.yaml",
                  [f"data.root={phantom}", f"train.out_dir={work / 'run'}", f"train.steps={STEPS}",
                   "train.device=cpu"])
run_dir = Path(run(cfg))
splits = json.loads((run_dir / "splits.json").read_text())
print("run:", run_dir, "| test subjects:", splits["test"])"""),
    ("md", """## 3. Synthesize pseudo-STIR for a held-out subject
The output lies on the input's exact grid (same affine and shape), in the T2w's intensity scale."""),
    ("code", """sid = splits["test"][0]
t2w = load_volume(phantom / sid / f"{sid}_T2w.nii.gz")
synth = Synthesizer.from_checkpoint(run_dir / "best.pt", device="cpu")
pseudo, uncertainty = synth.predict(t2w, uncertainty=True)
stir = load_volume(phantom / sid / f"{sid}_STIR.nii.gz")
assert (pseudo.affine == t2w.affine).all() and pseudo.shape == t2w.shape

view = SagittalView.from_affine(t2w.affine)
mid = view.to_slices(t2w.data).shape[0] // 2
fig, axes = plt.subplots(1, 4, figsize=(14, 4))
for ax, (title, vol) in zip(axes, [("T2w", t2w), ("pseudo-STIR", pseudo), ("STIR", stir), ("uncertainty", uncertainty)]):
    ax.imshow(view.to_slices(vol.data)[mid], cmap="gray"); ax.set_title(title); ax.axis("off")"""),
    ("md", """## 4. Evaluate against the real STIR
Metrics are computed in the normalized space ([-1, 1], `data_range=2.0`) inside the body mask; lesion-level
contrast recovery says how much of each lesion's STIR contrast the pseudo-STIR reproduces."""),
    ("code", """pred_dir = work / "pred"
pred_dir.mkdir()
for s in splits["test"]:
    vol = synth(load_volume(phantom / s / f"{s}_T2w.nii.gz"))
    synthseq.save_volume(vol, pred_dir / f"{s}_pseudoSTIR.nii.gz", dtype="float32")
report = evaluate_paths(pred_dir, phantom, work / "evaluation", inputs=phantom, train_subjects=splits["train"],
                        use_lpips=False)
table = pd.read_csv(work / "evaluation" / "metrics.csv")
table.groupby("method")[["mae", "psnr", "ssim"]].mean()"""),
    ("md", """Open `report.html` in the evaluation folder for per-subject montages at the lesion slices."""),
    ("code", """print(report)"""),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).with_name("01_quickstart.ipynb")
    nbformat.write(build(), path)
    print(path)
