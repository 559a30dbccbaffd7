"""The training run's data: which subjects feed which pool."""

import pytest

from synthseq.data import load_subjects
from synthseq.errors import ConfigError
from synthseq.training.data import train_dataset


@pytest.mark.parametrize("pools", ["shared", "disjoint"])
def test_unpaired_pools(tiny_cfg, tiny_root, pools):
    subjects = load_subjects(tiny_root)
    ds = train_dataset(tiny_cfg("cyclegan", f"data.unpaired_pools={pools}"), subjects)
    a = {st.subject for st in ds.stacks_a}
    b = {st.subject for st in ds.stacks_b}
    ids = {s.id for s in subjects}
    if pools == "shared":
        assert a == b == ids
    else:  # every subject in exactly one pool
        assert not a & b and a | b == ids and abs(len(a) - len(b)) <= 1


def test_unknown_pool_mode_names_the_key(tiny_cfg, tiny_root):
    with pytest.raises(ConfigError, match="data.unpaired_pools"):
        train_dataset(tiny_cfg("cyclegan", "data.unpaired_pools=mixed"), load_subjects(tiny_root))


def _copy_layout(src, dst, drop=()):
    import shutil

    shutil.copytree(src, dst)
    for rel in drop:
        (dst / rel).unlink()
    return dst


def test_subject_without_target_is_left_out_named_and_kept_in_its_split(tiny_cfg, tiny_root, tmp_path, capsys):
    import json

    from synthseq.training import run
    from synthseq.training.checkpoint import load_checkpoint

    root = _copy_layout(tiny_root, tmp_path / "data", drop=["sub-0002/sub-0002_STIR.nii.gz"])
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ["sub-0001", "sub-0002", "sub-0003"], "val": ["sub-0004"],
                                  "test": ["sub-0005"]}))
    run_dir = run(tiny_cfg("pix2pix", f"data.root={root}", f"data.splits={splits}", "train.steps=2"))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "left out" in ln]
    assert lines == ["synthseq: data: 1 train subject(s) without STIR left out of paired training: sub-0002 "
                     "(still synthesized with their split)"]
    stored = json.loads((run_dir / "splits.json").read_text())
    assert stored["train"] == ["sub-0001", "sub-0002", "sub-0003"]  # still in its split: synthesize covers it
    best, last = load_checkpoint(run_dir / "best.pt"), load_checkpoint(run_dir / "last.pt")
    assert best["splits"] == stored and best["slice_plane"] == "sagittal"
    # best.pt: what synthesis needs; last.pt: also what resuming needs
    assert "optimizers" not in best and "rng" not in best and {"config", "model", "preprocessing"} <= set(best)
    assert set(last["optimizers"]) == {"G", "D"}


def test_kfold_config_gives_disjoint_test_folds(tiny_cfg, tmp_path):
    from synthseq.training.data import subject_splits

    tests = []
    for fold in range(5):
        splits, _ = subject_splits(tiny_cfg("pix2pix", "data.folds=5", f"data.fold={fold}"), tmp_path, False)
        assert len(splits["test"]) == 1 and not set(splits["test"]) & set(splits["train"] + splits["val"])
        tests += splits["test"]
    assert sorted(tests) == [f"sub-{i:04d}" for i in range(1, 6)]


def test_init_from_copies_weights_and_names_shape_mismatches(tiny_cfg, tmp_path):
    import torch

    from synthseq.config import to_dict
    from synthseq.models import build_gan
    from synthseq.training import run
    from synthseq.training.checkpoint import in_channels_of, load_checkpoint
    from synthseq.training.loop import init_weights_from

    first = run(tiny_cfg("pix2pix", "train.steps=2", out="first"))
    ckpt = load_checkpoint(first / "best.pt")
    cfg = tiny_cfg("pix2pix")
    model = build_gan(cfg.model, cfg.loss, in_channels_of(to_dict(cfg)))
    init_weights_from(model, first / "best.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key
    wider = tiny_cfg("pix2pix", "model.generator_kwargs={base_channels: 8, num_downs: 3}")
    other = build_gan(wider.model, wider.loss, in_channels_of(to_dict(wider)))
    with pytest.raises(ConfigError) as exc:
        init_weights_from(other, first / "best.pt")
    msg = str(exc.value)
    assert msg.startswith(f"train.init_from={first / 'best.pt'}: weights do not fit") and "in the checkpoint" in msg
    assert "\n" not in msg and "more)" in msg
    # a run started from it trains with a fresh optimizer
    tuned = run(tiny_cfg("pix2pix", "train.steps=1", f"train.init_from={first / 'best.pt'}", out="tuned"))
    assert load_checkpoint(tuned / "last.pt")["step"] == 1


def test_training_refuses_unusable_pairs_with_the_dataset_check_reasons(tiny_cfg, tiny_root, tmp_path):
    import nibabel as nib
    import numpy as np

    from synthseq.errors import InputError
    from synthseq.training import run

    root = _copy_layout(tiny_root, tmp_path / "data")
    path = root / "sub-0003" / "sub-0003_STIR.nii.gz"
    img = nib.load(str(path))
    shifted = np.roll(np.asarray(img.dataobj), 4, axis=1)  # 4 mm anterior-posterior against its T2w
    nib.save(nib.Nifti1Image(shifted, img.affine), str(path))
    splits = tmp_path / "splits.json"
    splits.write_text('{"train": ["sub-0001", "sub-0002", "sub-0003"], "val": ["sub-0004"], "test": ["sub-0005"]}')
    with pytest.raises(InputError) as exc:
        run(tiny_cfg("pix2pix", f"data.root={root}", "train.steps=1", f"data.splits={splits}"))
    msg = str(exc.value)
    assert msg.startswith(f"data.root={root}: 1 unusable subject(s): sub-0003: misregistered pair")
    assert "\n" not in msg and not (tmp_path / "run").exists()
    # with data.register=true the run refines the pair itself: no refusal
    run(tiny_cfg("pix2pix", f"data.root={root}", "train.steps=1", f"data.splits={splits}", "data.register=true"))


def test_synthesize_and_evaluate_limited_to_a_split_and_warned_about_training_subjects(tiny_cfg, tiny_root, tmp_path,
                                                                                        capsys):
    import json

    from synthseq.evaluation import evaluate_paths
    from synthseq.synthesis import synthesize_path
    from synthseq.training import run

    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ["sub-0001", "sub-0002", "sub-0003"], "val": ["sub-0004"],
                                  "test": ["sub-0005"]}))
    run_dir = run(tiny_cfg("pix2pix", f"data.splits={splits}", "train.steps=2"))
    ckpt = run_dir / "best.pt"
    written = synthesize_path(ckpt, tiny_root, tmp_path / "pred", device="cpu", split="test")
    assert [p.name for p in written if p.name.endswith("_pseudoSTIR.nii.gz")] == ["sub-0005_pseudoSTIR.nii.gz"]
    more = synthesize_path(ckpt, tiny_root, tmp_path / "pred", device="cpu", subjects=["sub-0001", "sub-0004"])
    assert sorted(p.name for p in more if p.name.endswith(".nii.gz")) == ["sub-0001_pseudoSTIR.nii.gz",
                                                                         "sub-0004_pseudoSTIR.nii.gz"]
    capsys.readouterr()
    evaluate_paths(tmp_path / "pred", tiny_root, tmp_path / "ev_test", checkpoint=ckpt, split="test", use_lpips=False)
    assert "training split" not in capsys.readouterr().err
    assert json.loads((tmp_path / "ev_test" / "summary.json").read_text())["subjects"] == ["sub-0005"]
    evaluate_paths(tmp_path / "pred", tiny_root, tmp_path / "ev_all", checkpoint=ckpt, use_lpips=False)
    err = capsys.readouterr().err
    assert "synthseq: warning: evaluate: 1 scored subject(s) are in the checkpoint's training split " \
           "(optimistic scores): sub-0001" in err
    summary = json.loads((tmp_path / "ev_all" / "summary.json").read_text())
    assert summary["subjects"] == ["sub-0001", "sub-0004", "sub-0005"]
    assert summary["scored_training_subjects"] == ["sub-0001"]
    with pytest.raises(Exception, match="subject 'sub-0009' has no prediction / target pair"):
        evaluate_paths(tmp_path / "pred", tiny_root, tmp_path / "ev_x", subjects=["sub-0009"], use_lpips=False)


@pytest.mark.parametrize("extra, phrase", [
    (["data.splits={tmp}/none.json"], "none.json: no such splits file"),
    (["data.slice_plane=oblique"], "data.slice_plane: expected one of sagittal, axial, coronal, acquisition"),
    (["data.folds=3", "data.fold=3"], "data.fold: must be in [0, 2]"),
    (["data.sessions=merged"], "data.sessions: expected one of separate, grouped"),
    (["train.init_from={tmp}/nope.pt"], "nope.pt: checkpoint not found"),
])
def test_bad_data_settings_one_line_exit_2_nothing_written(tiny_args, tmp_path, capsys, extra, phrase):
    from synthseq.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    out = tmp_path / "run"
    code = main(["train", str(cfg), *tiny_args(), f"train.out_dir={out}", "train.steps=1",
                 *[e.format(tmp=tmp_path) for e in extra]])
    err = capsys.readouterr().err
    assert code == 2 and phrase in err and err.startswith("synthseq: error: ") and err.count("\n") == 1, err
    assert not out.exists()
