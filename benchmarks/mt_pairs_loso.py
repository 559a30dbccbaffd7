"""Real data: leave-one-subject-out MToff -> MTon on ``../shared/data/real/mt_pairs`` (3 subjects, axial GRE
with / without a magnetization-transfer pulse on one voxel grid, 0.9 x 0.9 x 5 mm).

Per fold (two subjects train, the third is scored):

* ``pix2pix_scratch``: pix2pix trained from random weights on the two training subjects' axial slices;
* ``pix2pix_pretrained_<realism>``: the same, started (``train.init_from``) from a model pretrained on phantom
  T2w -> STIR (default preset, 12 subjects) of that realism mode: ``classic`` (today's phantom) or the
  sim-to-real ``faithful`` / ``randomized`` modes (issue 20). The phantom knows no MT physics: the pretraining is
  a generic contrast prior (tissue boundaries, fat and fluid), which is what a hospital's own fine-tuning would
  start from;
* ``histmatch`` and ``linear_pooled``: the fair baselines of :mod:`synthseq.baselines`, fit on the same two
  training subjects.

Every run uses one generator (``GENERATOR``; pretraining too, so the weights fit). Scored by
:func:`synthseq.evaluation.evaluate_volumes` in the body mask estimated from the MToff image, SSIM in axial
slices, predictions in the input's scale (``pred_norm="input"``). The data are read as BIDS-named files
(``data.bids`` maps ``MToff`` / ``MTon`` to ``acq-MToff_MTS`` / ``acq-MTon_MTS``), one splits file per fold.

Usage (single-threaded, as measured in the README)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/mt_pairs_loso.py --work /tmp/mt_loso \\
        --out benchmarks/results/mt_pairs_loso.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import ROOT  # noqa: F401  (puts the checkout on sys.path)

DATA = ROOT.parent / "shared" / "data" / "real" / "mt_pairs"
BIDS = {"MToff": "acq-MToff_MTS", "MTon": "acq-MTon_MTS"}
#: The generator of every run, pretraining included (``train.init_from`` needs identical shapes): a U-Net with the
#: input joined at full resolution (``full_res_head``) and a residual output on the input (``residual_channel``),
#: no dropout (a deterministic fit of the pair). 5 levels: at 128 px crops the innermost map is 4 x 4, not the
#: degenerate 1 x 1 of U-Net-256, so full 256 px slices at inference look like training to every level.
GENERATOR = "{base_channels: 16, num_downs: 5, norm: batch, dropout: 0.0, full_res_head: 32, residual_channel: 0}"
MODEL = ["model.kind=pix2pix", "model.generator=unet", f"model.generator_kwargs={GENERATOR}",
         "model.discriminator=patchgan", "model.discriminator_kwargs={base_channels: 16, n_layers: 2, norm: batch}",
         "loss.gan_mode=vanilla", "loss.pix2pix.lambda_l1=100", "loss.pix2pix.lambda_ssim=50"]
#: Real-pair runs keep the standard augmentation (flips, small affine, and on the input only bias field, gamma,
#: noise): with two training subjects the held-out subject's own intensity relations are what the model must
#: tolerate (the ablation in benchmarks/RESULTS.md).
FOLD = ["data.augment=true"]
TRAIN = ["train.batch_size=4", "train.lr=2e-4", "train.amp=false", "train.channels_last=false",
         "train.device=cpu", "train.cpu_threads=1", "train.val_every=100000", "train.image_every=100000",
         "train.log_every=100", "train.seed=0"]
#: Pretraining phantoms: today's (classic) and the sim-to-real ones of issue 20 (``synthseq phantom --realism``).
REALISMS = ("classic", "faithful", "randomized")


CPU: dict[str, float] = {}  #: CPU seconds of this process per run (wall time depends on the machine's load)


def _train(overrides: list[str]) -> tuple[Path, float]:
    from synthseq.config import load_config
    from synthseq.training import run

    cfg = load_config(None, overrides)
    t0, c0 = time.perf_counter(), time.process_time()
    run_dir = run(cfg)
    CPU[str(run_dir.name)] = time.process_time() - c0
    return run_dir / "best.pt", time.perf_counter() - t0


def pretrain(work: Path, steps: int, realism: str = "classic", subjects: int = 12, crop: int = 128,
             extra: list[str] | None = None) -> tuple[Path, float]:
    """Phantom T2w -> STIR (default preset, 0.94 mm like the MT pairs' 0.9 mm; sagittal), the initialisation of
    the ``pretrained_<realism>`` variant: a generic contrast prior (fat and fluid, tissue boundaries), not the MT
    physics."""
    from synthseq.phantom import generate_dataset

    out = work / f"phantom_run_{realism}"
    if (out / "best.pt").is_file():
        return out / "best.pt", 0.0
    phantom = work / f"phantom_{realism}"
    if not (phantom / "dataset.json").is_file():
        generate_dataset(phantom, subjects=subjects, seed=0, preset="default", realism=realism, overwrite=True)
    return _train([f"data.root={phantom}", f"data.image_size={crop}", "data.val_fraction=0", "data.test_fraction=0",
                   *MODEL, *TRAIN, *(extra or []), f"train.steps={steps}", f"train.out_dir={out}"])


def fold(data: Path, work: Path, test: str, train: list[str], steps: int, init: Path | None, name: str,
         crop: int = 128, extra: list[str] | None = None) -> tuple[Path, float]:
    splits = work / f"splits_{test}.json"
    splits.write_text(json.dumps({"train": train, "val": [], "test": [test]}))
    out = work / f"{name}_{test}"
    if (out / "best.pt").is_file():
        return out / "best.pt", 0.0
    over = [f"data.root={data}", f"data.bids={json.dumps(BIDS)}", f"data.splits={splits}",
            "data.input_keys=[MToff]", "data.target_key=MTon", "data.slice_plane=axial",
            f"data.image_size={crop}", *MODEL, *FOLD, *TRAIN, *(extra or []), f"train.steps={steps}",
            f"train.out_dir={out}"]
    if init is not None:
        over.append(f"train.init_from={init}")
    return _train(over)


def score(data: Path, test: str, train: list[str], ckpts: dict[str, Path]) -> list[dict]:
    from synthseq.baselines import pair_stats
    from synthseq.data.layout import load_subjects
    from synthseq.data.preprocess import body_mask_from_intensity
    from synthseq.evaluation import SubjectData, evaluate_volumes
    from synthseq.io import load_volume
    from synthseq.synthesis import Synthesizer

    subjects = {s.id: s for s in load_subjects(data, bids=BIDS)}
    stats = []
    for sid in train:
        x, y = load_volume(subjects[sid].path("MToff")), load_volume(subjects[sid].path("MTon"))
        stats.append(pair_stats(x, y, body_mask_from_intensity(x.data), sid))
    x, y = load_volume(subjects[test].path("MToff")), load_volume(subjects[test].path("MTon"))
    rows = []
    for i, (method, ckpt) in enumerate(ckpts.items()):
        pred = Synthesizer.from_checkpoint(ckpt, device="cpu").predict(x)[0]
        table = evaluate_volumes([SubjectData(test, pred, y, t2w=x)], train=stats, baselines=i == 0,
                                 use_lpips=False, pred_norm="input", slice_plane="axial")
        for rec in table.to_dict("records"):
            if rec["method"] == "linear_oracle":
                continue
            rec["method"] = method if rec["method"] == "pseudo_stir" else rec["method"]
            rows.append({k: rec[k] for k in ("subject", "method", "ssim", "mae", "psnr")})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--work", type=Path, required=True, help="folder for runs (reused if present)")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps per fold and variant")
    p.add_argument("--pretrain-steps", type=int, default=600)
    p.add_argument("--pretrain-subjects", type=int, default=12, help="phantom subjects (default preset)")
    p.add_argument("--crop", type=int, default=128, help="training crop (native 0.9 mm pixels; slices are 256 x 256)")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run, pretraining included (repeatable)")
    p.add_argument("--folds", nargs="+", default=None, help="held-out subjects to run (default: all)")
    p.add_argument("--variants", nargs="+", default=["scratch", "pretrained_classic", "pretrained_randomized"],
                   choices=["scratch", *(f"pretrained_{r}" for r in REALISMS)],
                   help="from random weights, or from a model pretrained on the phantom of that realism mode")
    args = p.parse_args(argv)
    from synthseq.data.layout import load_subjects

    args.work.mkdir(parents=True, exist_ok=True)
    ids = [s.id for s in load_subjects(args.data, bids=BIDS)]
    inits: dict[str, Path | None] = {"scratch": None}
    times: dict[str, float] = {}
    for variant in args.variants:
        if variant.startswith("pretrained_"):
            realism = variant.removeprefix("pretrained_")
            inits[variant], times[f"pretrain_{realism}"] = pretrain(args.work, args.pretrain_steps, realism,
                                                                    args.pretrain_subjects, args.crop, args.set)
            print(f"pretrain {realism}: {times[f'pretrain_{realism}']:.0f} s wall", file=sys.stderr, flush=True)
    rows, ckpts = [], {}
    folds = args.folds or ids
    for test in folds:  # train everything first (cached in --work), then score
        train = [s for s in ids if s != test]
        for variant in args.variants:
            name = f"pix2pix_{variant}"
            ckpts[test, name], times[f"{name}_{test}"] = fold(args.data, args.work, test, train, args.steps,
                                                              inits[variant], name, args.crop, args.set)
            print(f"{name} {test}: {times[f'{name}_{test}']:.0f} s wall, "
                  f"{CPU.get(f'{name}_{test}', 0.0):.0f} s CPU", file=sys.stderr, flush=True)
    for test in folds:
        train = [s for s in ids if s != test]
        rows += score(args.data, test, train, {name: c for (t, name), c in ckpts.items() if t == test})
    header = f"{'fold (test)':<12} {'method':<20} {'SSIM':>7} {'MAE':>7} {'PSNR':>7}"
    print(header)
    for r in rows:
        print(f"{r['subject']:<12} {r['method']:<20} {r['ssim']:7.4f} {r['mae']:7.4f} {r['psnr']:7.2f}")
    beats = {}
    for test in folds:
        by = {r["method"]: r for r in rows if r["subject"] == test}
        for m in (f"pix2pix_{v}" for v in args.variants):
            beats[f"{m}_{test}"] = all(by[m]["ssim"] > by[b]["ssim"] and by[m]["mae"] < by[b]["mae"]
                                       for b in ("histmatch", "linear_pooled"))
    print("beats both baselines on SSIM and MAE:", json.dumps(beats))
    if args.out is not None:
        from synthseq.utils import atomic_write_text

        atomic_write_text(args.out, json.dumps({"rows": rows, "wall_seconds": times, "cpu_seconds": CPU,
                                                "steps": args.steps, "pretrain_steps": args.pretrain_steps,
                                                "pretrain_subjects": args.pretrain_subjects, "crop": args.crop,
                                                "generator": GENERATOR, "overrides": args.set,
                                                "beats_baselines": beats}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
