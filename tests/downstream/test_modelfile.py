"""Model files: no code runs on load (old pickles refused unread, skops allowlist), content hash checked."""

import json
import pickle

import numpy as np
import pytest

from synthseq.cli import main
from synthseq.downstream.classifier import ClassifierConfig, InjuryClassifier, build_network
from synthseq.downstream.modelfile import MAGIC, read_model_file, write_model_file
from synthseq.downstream.outcome import (
    OutcomeConfig,
    OutcomeModel,
    catboost_available,
    fit_ensemble,
    make_estimator,
)
from synthseq.errors import InputError


class _Trap:
    """Unpickling this touches ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _xy(n=60, f=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.5, n) > 0).astype(int)
    return x, y


def _outcome(kind, n_ensemble=3):
    x, y = _xy()
    cfg = OutcomeConfig(model=kind, hgb_max_iter=10, hgb_min_samples_leaf=3, catboost_iterations=20,
                        n_ensemble=n_ensemble)
    return OutcomeModel(cfg, [f"f{i}" for i in range(x.shape[1])], make_estimator(cfg).fit(x, y), x,
                        {"cv": {"auc": 0.8}}, fit_ensemble(cfg, x, y)), x


KINDS = ["hgb", "logreg"] + (["catboost"] if catboost_available() else [])


@pytest.mark.parametrize("kind", KINDS)
def test_outcome_model_round_trip(tmp_path, kind):
    model, x = _outcome(kind)
    path = model.save(tmp_path / "m.ssmodel")
    assert path.read_bytes().startswith(MAGIC)
    again = OutcomeModel.load(path)
    np.testing.assert_array_equal(again.predict_proba(x), model.predict_proba(x))
    np.testing.assert_allclose(again.decision_function(x), model.decision_function(x), atol=1e-12)
    assert len(again.ensemble) == 3 and again.metrics == {"cv": {"auc": 0.8}}
    lo, hi = again.interval(x)
    assert np.all(lo <= hi) and np.all((lo >= 0) & (hi <= 1)) and np.any(hi - lo > 0)
    np.testing.assert_array_equal(lo, model.interval(x)[0])


def test_flipped_bit_or_truncation_is_one_line(tmp_path):
    model, _ = _outcome("hgb", n_ensemble=0)
    path = model.save(tmp_path / "m.ssmodel")
    data = bytearray(path.read_bytes())
    header_end = data.index(b"\n", len(MAGIC)) + 1
    for offset in (header_end + 10, len(data) // 2, len(data) - 5):  # inside the payload
        bad = bytearray(data)
        bad[offset] ^= 0x04
        (tmp_path / "bad.ssmodel").write_bytes(bytes(bad))
        with pytest.raises(InputError, match=r"content hash \(sha256\) does not match") as err:
            OutcomeModel.load(tmp_path / "bad.ssmodel")
        assert "\n" not in str(err.value) and str(err.value).startswith(str(tmp_path / "bad.ssmodel"))
    (tmp_path / "short.ssmodel").write_bytes(bytes(data[:-100]))
    with pytest.raises(InputError, match="truncated"):
        OutcomeModel.load(tmp_path / "short.ssmodel")
    bad = bytearray(data)
    bad[len(MAGIC) + 3] ^= 0x40  # inside the JSON header
    (tmp_path / "hdr.ssmodel").write_bytes(bytes(bad))
    with pytest.raises(InputError, match="corrupt model"):
        OutcomeModel.load(tmp_path / "hdr.ssmodel")


def test_old_pickles_are_refused_unread(tmp_path, capsys):
    import joblib
    import torch

    marker = tmp_path / "code_ran"
    old = tmp_path / "model.joblib"
    joblib.dump({"format": "synthseq-outcome", "estimator": _Trap(marker)}, old)
    with pytest.raises(InputError, match="old pickle-based format.*could run code"):
        OutcomeModel.load(old)
    assert main(["outcome", "predict", "--model", str(old), "--data", str(tmp_path), "--out",
                 str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.joblib: not a synthseq outcome model" in err
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(InputError, match="pickle / joblib file"):
        OutcomeModel.load(tmp_path / "raw.pkl")
    pt = tmp_path / "model.pt"
    torch.save({"format": "synthseq-classifier", "trap": _Trap(marker)}, pt)
    with pytest.raises(InputError, match="a torch.save file"):
        InjuryClassifier.load(pt)
    assert not marker.exists()  # nothing was unpickled


def test_skops_allowlist_refuses_other_types(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from synthseq.config import to_dict

    evil = sio.dumps(FunctionTransformer(func=eval))
    cfg = OutcomeConfig(model="logreg", n_ensemble=0)
    meta = {"config": to_dict(cfg), "feature_names": ["a"], "metrics": {}, "n_ensemble": 0}
    path = write_model_file(tmp_path / "evil.ssmodel", "synthseq-outcome", meta, {"background": np.zeros((2, 1))},
                            {"estimator": evil})
    with pytest.raises(InputError, match=r"types outside the allowlist \(builtins.eval\)"):
        OutcomeModel.load(path)
    with pytest.raises(InputError, match="not a synthseq classifier model"):
        InjuryClassifier.load(path)  # right container, wrong kind
    with pytest.raises(ValueError, match="Python objects"):
        write_model_file(tmp_path / "o.ssmodel", "x", {}, {"a": np.array([{}], dtype=object)})


def test_classifier_round_trip_and_hash(tmp_path):
    import torch

    cfg = ClassifierConfig(labels=["fracture"], image_size=16, n_slices=2)
    torch.manual_seed(0)
    model = InjuryClassifier(cfg, build_network(cfg, 2).eval(), 2, {"auc": float("nan")})
    x = np.random.default_rng(0).normal(size=(3, 2, 16, 16)).astype(np.float32)
    path = model.save(tmp_path / "model.ssmodel")
    again = InjuryClassifier.load(path)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.in_channels == 2 and again.labels == ["fracture"]
    f = read_model_file(path, "synthseq-classifier", "classifier model")
    assert all(a.dtype != object for a in f.arrays.values()) and json.dumps(f.meta)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="content hash"):
        InjuryClassifier.load(path)
