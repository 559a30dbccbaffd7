"""``synthseq demo``: the main job end to end on the embedded phantom.

phantom (tiny preset on CPU, default preset on GPU) -> train pix2pix -> synthesize the held-out TEST subjects ->
evaluate against real STIR with the histogram-matching and linear-fit baselines -> report.
On 2 CPU cores the whole run takes a few minutes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_DIR
from .errors import InputError


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs on a given device."""

    preset: str
    subjects: int
    config: Path
    steps: int | None  # None: the config's own number of steps


def plan_for(device_type: str, steps: int | None = None) -> DemoPlan:
    if device_type == "cuda":
        return DemoPlan("default", 48, CONFIG_DIR / "pix2pix_t2_stir.yaml", steps or 3000)
    return DemoPlan("tiny", 24, CONFIG_DIR / "pix2pix_cpu_tiny.yaml", steps)


def run_demo(out: str | Path = "demo_out", device: str = "auto", seed: int = 0, steps: int | None = None,
             config: str | Path | None = None) -> Path:
    """Run the demo into ``out`` and return the path of the evaluation report."""
    from .config import load_config
    from .evaluation import evaluate_paths
    from .phantom import generate_dataset
    from .synthesis import Synthesizer, synthesize_path
    from .training import run
    from .training.model_card import attach_evaluation
    from .utils import resolve_device

    out = Path(out)
    dev = resolve_device(device)
    plan = plan_for(dev.type, steps)
    cfg_path = Path(config) if config is not None else plan.config
    if not cfg_path.is_file():
        raise InputError(f"{cfg_path}: demo config not found (run from a synthseq checkout or pass a config)")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: demo output folder is not empty (choose another --out or remove it)")

    phantom_dir = out / "phantom"
    print(f"[1/4] phantom: {plan.subjects} subjects, {plan.preset} preset -> {phantom_dir}")
    generate_dataset(phantom_dir, subjects=plan.subjects, seed=seed, preset=plan.preset, preview=True)

    overrides = [f"data.root={phantom_dir}", f"train.out_dir={out / 'run'}", f"train.device={dev}",
                 f"train.seed={seed}"]
    if plan.steps is not None:
        overrides.append(f"train.steps={plan.steps}")
    cfg = load_config(cfg_path, overrides)
    print(f"[2/4] training {cfg.model.kind} for {cfg.train.steps} steps on {dev} ({cfg_path.name})")
    run_dir = Path(run(cfg))

    splits = json.loads((run_dir / "splits.json").read_text())
    test_ids = list(splits["test"])
    pred_dir = out / "pseudo_stir"
    print(f"[3/4] synthesizing {len(test_ids)} held-out subject(s) -> {pred_dir}")
    synth = Synthesizer.from_checkpoint(run_dir / "best.pt", device=str(dev))
    for sid in test_ids:
        synthesize_path(run_dir / "best.pt", phantom_dir / sid / f"{sid}_T2w.nii.gz",
                        pred_dir / f"{sid}_pseudoSTIR.nii.gz", uncertainty=True, seed=seed, synthesizer=synth)

    print(f"[4/4] evaluating against real STIR with baselines -> {out / 'evaluation'}")
    report = evaluate_paths(pred_dir, phantom_dir, out / "evaluation", inputs=phantom_dir, seed=seed,
                            train_subjects=list(splits["train"]), checkpoint=run_dir / "best.pt")
    # the model card beside (and inside) best.pt now carries these held-out results, lesion classes included
    attach_evaluation(run_dir / "best.pt", out / "evaluation" / "summary.json")
    return Path(report)
