"""synthseq.training.model_card: MODEL_CARD.md beside best.pt and inside it, test results attached, info prints it."""

from __future__ import annotations

import json

import pytest
import torch

from synthseq.cli import main
from synthseq.errors import InputError
from synthseq.training import run
from synthseq.training.checkpoint import load_checkpoint, save_checkpoint
from synthseq.training.model_card import CARD_NAME, attach_evaluation, build_model_card, card_facts


def _summary(path, cr_marrow=0.16, n_marrow=3):
    stat = lambda m, n=5, lo=None, hi=None: {"mean": m, "ci_low": lo, "ci_high": hi, "n": n}  # noqa: E731
    summary = {
        "n_subjects": 5, "subjects": ["sub-0001", "sub-0002", "sub-0003", "sub-0004", "sub-0005"],
        "methods": {
            "pseudo_stir": {"ssim": stat(0.812, 5, 0.80, 0.83), "mae": stat(0.061), "psnr": stat(24.5),
                            "cr_cord_edema": stat(0.87, 6, 0.80, 0.93), "cnr_cord_edema": stat(9.1, 6),
                            "sr_cord_edema": stat(0.95, 6),
                            "cr_marrow_edema": stat(cr_marrow, n_marrow, 0.05, 0.30),
                            "cnr_marrow_edema": stat(1.2, n_marrow)},
            "histogram_matching": {"ssim": stat(0.70), "cr_cord_edema": stat(0.91, 6),
                                   "cr_marrow_edema": stat(0.10, n_marrow)},
        },
    }
    path.write_text(json.dumps(summary))
    return path


def test_training_writes_the_card_beside_and_inside_best_pt(tiny_cfg, capsys):
    run_dir = run(tiny_cfg("pix2pix", "train.steps=2"))
    card_file = run_dir / CARD_NAME
    assert card_file.is_file()
    ckpt = load_checkpoint(run_dir / "best.pt")
    text = card_file.read_text()
    assert ckpt["model_card"] == text
    splits = json.loads((run_dir / "splits.json").read_text())
    assert "**Research only, not for diagnosis.**" in text
    assert "- inputs: T2w; target: STIR" in text and "slice plane: sagittal" in text
    assert f"- train: {len(splits['train'])} subject(s): {', '.join(splits['train'])}" in text
    assert f"- val: {len(splits['val'])} subject(s)" in text and f"- test: {len(splits['test'])} subject(s)" in text
    best = ckpt["best"]
    assert best["step"] == 2 and f"best ssim: {best['value']:.3g} at step 2" in text
    assert "- at that step: mae " in text and " psnr " in text and " ssim " in text
    assert "pixel spacing: 1 x 1 mm" in text and "training crop 16 px" in text
    assert "- normalization: percentile [0.5, 99.5]" in text
    assert "## Known failure modes" in text and "Not evaluated on held-out test subjects yet" in text
    # synthseq info CKPT prints it
    assert main(["info", str(run_dir / "best.pt")]) == 0
    assert capsys.readouterr().out.strip() == text.strip()
    assert main(["info", "--json", str(run_dir / "best.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["model_card"] == text


def test_test_results_and_under_recovered_classes(tiny_cfg, tmp_path):
    run_dir = run(tiny_cfg("pix2pix", "train.steps=2"))
    card = attach_evaluation(run_dir / "best.pt", _summary(tmp_path / "summary.json"))
    text = card.read_text()
    assert load_checkpoint(run_dir / "best.pt")["model_card"] == text  # stored inside the checkpoint too
    assert "5 subject(s): sub-0001, sub-0002" in text
    assert "- ssim: 0.812 (95% CI 0.8 to 0.83), n=5" in text
    assert ("| lesion class | contrast recovery | step recovery | CNR pseudo-STIR | recovery histogram_matching |"
            in text)
    assert "| cord edema | 0.87 (95% CI 0.8 to 0.93), n=6 | 0.95, n=6 | 9.1, n=6 | 0.91 |" in text
    assert "| marrow edema | 0.16 (95% CI 0.05 to 0.3), n=3 | n/a |" in text  # a summary without step recovery
    assert "Under-recovers **marrow edema**: contrast recovery 0.16 (95% CI 0.05 to 0.3), n=3" in text
    assert "n < 5: not conclusive" in text
    assert "cord edema**" not in text  # 0.87 >= 0.8: not a failure mode
    assert "Not evaluated yet" not in text


def test_phantom_training_data_is_named(tiny_root, tmp_path):
    (tiny_root / "dataset.json").write_text(json.dumps(
        {"generator": "synthseq.phantom", "preset": "tiny", "seed": 7, "field_strength_T": 1.5,
         "subjects": {f"sub-000{i}": {} for i in range(1, 6)}}))
    try:
        ckpt = {"kind": "pix2pix", "config": {"data": {"root": str(tiny_root), "input_keys": ["T1w", "T2w"]},
                                              "model": {"generator": "unet"}},
                "input_keys": ["T1w", "T2w"], "pixel_spacing_mm": [0.94, 0.94], "slice_plane": "axial",
                "splits": {"train": ["sub-0001", "sub-0002", "sub-0003"], "val": ["sub-0004"], "test": ["sub-0005"]},
                "best": {"metric": "ssim", "value": 0.5, "step": 10}}
        facts = card_facts(ckpt)
        assert facts["dataset"] == {"root": str(tiny_root), "kind": "phantom", "preset": "tiny", "seed": 7,
                                    "field_strength_T": 1.5, "n_subjects": 5}
        text = build_model_card(ckpt)
        assert "Phantom (synthseq.phantom) preset **tiny**, seed 7, 1.5 T, 5 subjects" in text
        assert "T1w + T2w -> pseudo-STIR" in text and "slice plane: axial" in text
        assert "pixel spacing: 0.94 x 0.94 mm" in text and "- test: 1 subject(s): sub-0005" in text
        assert "Trained on a synthetic phantom" in text
    finally:
        (tiny_root / "dataset.json").unlink()


def test_old_checkpoint_gets_a_rendered_card_and_bad_summary_is_refused(tiny_cfg, tmp_path, capsys):
    run_dir = run(tiny_cfg("pix2pix", "train.steps=2"))
    ckpt = load_checkpoint(run_dir / "best.pt")
    del ckpt["model_card"]
    old = save_checkpoint(ckpt, tmp_path / "old.pt")
    assert main(["info", str(old)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Model card: synthseq pix2pix (T2w -> pseudo-STIR)") and "not for diagnosis" in out
    bad = tmp_path / "summary.json"
    bad.write_text("{}")
    before = (run_dir / CARD_NAME).read_text()
    with pytest.raises(InputError, match="not an evaluation summary"):
        attach_evaluation(run_dir / "best.pt", bad)
    assert (run_dir / CARD_NAME).read_text() == before
    assert main(["info", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    torch.set_num_threads(1)


def test_info_attaches_an_evaluation_and_warns_when_subjects_were_trained_on(tiny_cfg, tmp_path, capsys):
    run_dir = run(tiny_cfg("pix2pix", "train.steps=2"))
    splits = load_checkpoint(run_dir / "best.pt")["splits"]
    summary = _summary(tmp_path / "summary.json")
    ev = json.loads(summary.read_text())
    ev["subjects"] = [*splits["test"], splits["train"][0]]  # one trained-on subject slipped in
    summary.write_text(json.dumps(ev))
    assert main(["info", str(run_dir / "best.pt"), "--attach-evaluation", str(summary)]) == 0
    out = capsys.readouterr().out
    assert f"**WARNING: 1 evaluated subject(s) were used in training or validation ({splits['train'][0]})" in out
    assert out.strip() == (run_dir / CARD_NAME).read_text().strip()
    ev["subjects"] = list(splits["test"])
    summary.write_text(json.dumps(ev))
    assert main(["info", str(run_dir / "best.pt"), "--attach-evaluation", str(summary)]) == 0
    assert "WARNING" not in capsys.readouterr().out
    assert main(["info", str(run_dir / "best.pt"), str(run_dir / "last.pt"), "--attach-evaluation",
                 str(summary)]) == 2
    assert "--attach-evaluation: give exactly one checkpoint" in capsys.readouterr().err
