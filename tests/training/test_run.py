"""End-to-end runs of ``synthseq.training.run`` on a tiny synthetic phantom-layout folder (CPU)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from synthseq.errors import ConfigError
from synthseq.synthesis import Synthesizer
from synthseq.training import load_checkpoint, run

REPO = Path(__file__).resolve().parents[2]


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
def test_resume_continues_exactly(tiny_cfg, kind):
    # N = 3 steps, then resume to 2N, equals 2N uninterrupted (losses and weights); grad_accum exercises micro-batches
    full = run(tiny_cfg(kind, "train.steps=6", "train.grad_accum=2", out="full"))
    half = run(tiny_cfg(kind, "train.steps=3", "train.grad_accum=2", out="half"))
    assert load_checkpoint(half / "last.pt")["step"] == 3
    run(tiny_cfg(kind, "train.steps=6", "train.grad_accum=2", "train.resume=true", out="half"))
    a, b = _log(full), _log(half)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        for key in ra:
            if key != "images_per_s":
                assert ra[key] == pytest.approx(rb[key], abs=1e-6), (ra["step"], key)
    ca, cb = load_checkpoint(full / "last.pt"), load_checkpoint(half / "last.pt")
    assert ca["step"] == cb["step"] == 6
    for key, value in ca["model"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, cb["model"][key], rtol=0, atol=1e-6)
    # validation history is continued, not restarted (the first part also validated at its last step, 3)
    assert [r["step"] for r in map(json.loads, (half / "metrics.jsonl").read_text().splitlines())] == [2, 3, 4, 6]


def test_run_folder_checkpoint_and_tensorboard(tiny_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = run(tiny_cfg("pix2pix", "train.steps=4"))
    for name in ("config.yaml", "splits.json", "last.pt", "best.pt", "metrics.jsonl", "train_log.jsonl"):
        assert (run_dir / name).is_file(), name
    splits = json.loads((run_dir / "splits.json").read_text())
    ids = [s for part in ("train", "val", "test") for s in splits[part]]
    assert len(ids) == len(set(ids)) == 5 and splits["val"] and splits["test"]

    ckpt = load_checkpoint(run_dir / "last.pt")
    for key in ("synthseq_version", "kind", "config", "model", "optimizers", "schedulers", "scaler", "step", "rng",
                "preprocessing", "schema_version", "weights_sha256", "pixel_spacing_mm", "image_size", "context_slices",
                "input_keys", "best"):
        assert key in ckpt, key
    assert ckpt["kind"] == "pix2pix" and ckpt["step"] == 4 and ckpt["config"]["train"]["steps"] == 4
    assert tuple(ckpt["pixel_spacing_mm"]) == (1.0, 1.0)  # the synthetic volumes have 1 mm voxels
    assert set(ckpt["optimizers"]) == {"G", "D"}
    val = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    best = max(val, key=lambda r: r["ssim"])
    assert ckpt["best"]["metric"] == "ssim" and ckpt["best"]["value"] == pytest.approx(best["ssim"])
    assert load_checkpoint(run_dir / "best.pt")["step"] == best["step"]
    assert all(0 <= r["mae"] <= 2 and -1 <= r["ssim"] <= 1 for r in val)

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("loss/G", "loss/D", "loss/G_l1", "loss/G_gan", "train/lr", "train/images_per_s",
                "val/mae", "val/psnr", "val/ssim"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("loss/G")] == [1, 2, 3, 4]
    assert any(t.startswith("val/") for t in tags["images"]) and any(t.startswith("train/") for t in tags["images"])
    assert any(t.startswith("config") for t in tags["tensors"])


def test_lesion_weighted_l1_is_trained_and_logged(tiny_cfg):
    run_dir = run(tiny_cfg("pix2pix", "train.steps=2", "data.lesion_key=lesions", "loss.pix2pix.lambda_lesion=20"))
    rows = _log(run_dir)
    assert all(0 < r["G_l1_lesion"] < 2 for r in rows)  # lesion pixels exist in every subject of the tiny folder
    assert load_checkpoint(run_dir / "last.pt")["config"]["loss"]["pix2pix"]["lambda_lesion"] == 20.0


def test_lesion_reference_l1_is_trained_and_logged(tiny_cfg, tiny_root, tmp_path):
    # the tiny folder's lesions as PLC injuries (code 2): their reference tissue falls back to muscle (label 3)
    root = tmp_path / "plc"
    shutil.copytree(tiny_root, root)
    for path in root.glob("*/*_lesions.nii.gz"):
        img = nib.load(path)
        nib.save(nib.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.uint8) * 2, img.affine), path)
    run_dir = run(tiny_cfg("pix2pix", f"data.root={root}", "train.steps=2", "data.lesion_key=lesions",
                           "data.label_key=labels", "loss.pix2pix.lambda_lesion=20", "loss.pix2pix.lambda_reference=10"))
    rows = _log(run_dir)
    assert all(0 < r["G_l1_reference"] < 2 for r in rows)
    assert load_checkpoint(run_dir / "last.pt")["config"]["loss"]["pix2pix"]["lambda_reference"] == 10.0


def test_tissue_balanced_l1_is_trained_and_logged(tiny_cfg):
    # no lesion map needed: the weights come from the tissue labels alone
    run_dir = run(tiny_cfg("pix2pix", "train.steps=2", "data.label_key=labels", "loss.pix2pix.lambda_tissue=30"))
    rows = _log(run_dir)
    assert all(0 < r["G_l1_tissue"] < 2 for r in rows)
    assert load_checkpoint(run_dir / "last.pt")["config"]["loss"]["pix2pix"]["lambda_tissue"] == 30.0


def test_lesion_crop_discriminator_is_trained_saved_and_reloaded(tiny_cfg, tmp_path):
    run_dir = run(tiny_cfg("pix2pix", "train.steps=3", "data.lesion_key=lesions", "data.lesion_slice_weight=4",
                           "loss.pix2pix.lambda_lesion_gan=2", "loss.pix2pix.lesion_crop=24",
                           "data.image_size=32"))
    rows = _log(run_dir)
    assert any(r["G_gan_lesion"] > 0 for r in rows) and all(np.isfinite(r["D_lesion_real"]) for r in rows)
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert any(k.startswith("D_lesion.") for k in ckpt["model"])
    assert ckpt["config"]["loss"]["pix2pix"]["lesion_crop"] == 24
    syn = Synthesizer.from_checkpoint(run_dir / "last.pt")  # the checkpoint alone rebuilds the model
    assert syn.model.D_lesion is not None


@pytest.mark.parametrize("extra", [["loss.pix2pix.lambda_lesion=5"],
                                   ["loss.pix2pix.lambda_lesion=5", "data.lesion_key=lesions", "data.paired=false"],
                                   ["loss.pix2pix.lambda_lesion_gan=5", "loss.pix2pix.lesion_crop=16"]])
def test_lesion_weight_needs_paired_lesion_maps(tiny_cfg, extra):
    cfg = tiny_cfg("pix2pix", "train.steps=1", *extra)
    with pytest.raises(ConfigError, match=r"loss\.pix2pix\.lambda_lesion"):
        run(cfg)
    assert not Path(cfg.train.out_dir).exists()  # a refused run leaves no folder (not even splits.json)


def test_refuses_to_overwrite_a_run(tiny_cfg):
    run(tiny_cfg("pix2pix", "train.steps=1"))
    before = (Path(tiny_cfg("pix2pix").train.out_dir) / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"last\.pt exists.*resume=true"):
        run(tiny_cfg("pix2pix", "train.steps=1"))
    assert (Path(tiny_cfg("pix2pix").train.out_dir) / "last.pt").read_bytes() == before
    with pytest.raises(ConfigError, match="does not exist"):
        run(tiny_cfg("pix2pix", "train.resume=true", out="elsewhere"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_write_one_checkpoint(tiny_args, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(REPO / "train.py"), str(REPO / "configs" / "pix2pix_cpu_tiny.yaml"),
           *tiny_args("pix2pix"), f"train.out_dir={out}", "train.steps=3", "train.grad_accum=2",
           # with the lesion-crop discriminator too: DDP needs it in every backward, lesions or not
           "loss.pix2pix.lambda_lesion_gan=1", "loss.pix2pix.lesion_crop=16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]
    assert not list(out.glob(".*tmp*"))  # no leftovers of a second writer
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3 and any(k.startswith("D_lesion.") for k in ckpt["model"])
    assert ckpt["rng"]["world_size"] == 2 and len(ckpt["rng"]["per_rank"]) == 2
    # per-rank streams differ (seed + rank)
    assert not torch.equal(ckpt["rng"]["per_rank"][0]["torch"], ckpt["rng"]["per_rank"][1]["torch"])
    assert proc.stdout.count("run directory:") == 2  # both ranks finished


def test_best_checkpoint_final_keeps_the_last_step_and_still_validates(tiny_cfg):
    # val_every=2 over 6 steps: three validations; with "final" best.pt is the step-6 model whatever they rank
    run_dir = run(tiny_cfg("pix2pix", "train.steps=6", "train.best_checkpoint=final"))
    val = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in val] == [2, 4, 6] and [r["best"] for r in val] == [False, False, True]
    best, last = load_checkpoint(run_dir / "best.pt"), load_checkpoint(run_dir / "last.pt")
    assert best["step"] == 6 and best["best"] == {"metric": "ssim", "value": pytest.approx(val[-1]["ssim"]),
                                                  "step": 6, "rule": "final"}
    for key, value in last["model"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, best["model"][key], rtol=0, atol=0)
    card = (run_dir / "MODEL_CARD.md").read_text()
    assert "the final step, 6" in card


def test_best_checkpoint_rule_is_checked(tiny_cfg):
    with pytest.raises(ConfigError, match="train.best_checkpoint"):
        tiny_cfg("pix2pix", "train.best_checkpoint=latest").validate()
