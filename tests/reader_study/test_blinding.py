"""Blinding holds against a reader who reads everything the server sends, not only the images.

A study of 12 subjects is built and every served attribute (case IDs, reading positions of each reader, ETags,
Content-Lengths, header sets, the per-case info in ``state``) is fitted against the key: a threshold on the
attribute (the best of all thresholds, in sample) must not predict real vs synthetic, and ordering the cases by
the attribute must not put a subject's two cases next to each other. Under the old scheme (IDs from the seed in
build order, mtime ETags, PNG sizes) these attacks were perfect (unpadded PNG sizes alone: accuracy 1.0 when the
synthetic images are smoother); under chance the best threshold of a random 12-vs-12 order reaches 0.9 with
probability 1.8e-4 per attribute (200,000 simulated orders), and neighbours are partners for ~1 case in 12.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from synthseq.reader_study import build_study, read_key
from synthseq.reader_study.access import load_or_create_tokens
from synthseq.reader_study.app import create_app, redact_tokens
from synthseq.reader_study.build import reading_order

N_SUBJECTS = 12


@pytest.fixture(scope="module")
def big_study(rs, tmp_path_factory) -> Path:
    """12 subjects; synthetic = the real volume smoothed (so PNGs compress differently, as GAN outputs do)."""
    root = tmp_path_factory.mktemp("blind")
    rng = np.random.default_rng(5)
    for i in range(N_SUBJECTS):
        subject = f"sub-{i + 1:04d}"
        real = rng.gamma(2.0, 40.0 + 5 * i, size=rs.SHAPE).astype(np.float32)
        real[4:12, 8:24, :] += 300.0
        rs._save(real, root / "real" / subject / f"{subject}_STIR.nii.gz")
        rs._save(gaussian_filter(real, 1.2), root / "synthetic" / f"{subject}_pseudoSTIR.nii.gz")
    out = root / "study"
    build_study(root / "real", root / "synthetic", out, ["R1", "R2"], seed=0)  # the default seed
    return out


def _served(study: Path) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """case ID -> numeric attributes a reader can see, and case ID -> the raw responses' headers."""
    app = create_app(study)
    client = app.test_client()
    tokens = load_or_create_tokens(study, ["R1", "R2"])
    attrs: dict[str, dict[str, float]] = {}
    headers: dict[str, dict] = {}
    for reader in ("R1", "R2"):
        state = client.get(f"/api/{tokens[reader]}/state").get_json()
        for position, case in enumerate(state["cases"]):
            a = attrs.setdefault(case["id"], {"id": int(case["id"][1:], 16)})
            a[f"position_{reader}"] = position
            a["info"] = hash(json.dumps({k: v for k, v in case.items() if k != "id"}, sort_keys=True))
    t1 = tokens["R1"]
    for case_id, a in attrs.items():
        for name in ("stack.nii", "slice_000.png", "slice_002.png"):
            r = client.get(f"/api/{t1}/cases/{case_id}/{name}")
            assert r.status_code == 200
            body = r.get_data()
            assert "Last-Modified" not in r.headers  # no time stamps that order the cases
            assert r.headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'  # a content hash, nothing else
            again = client.get(f"/api/{t1}/cases/{case_id}/{name}", headers={"If-None-Match": r.headers["ETag"]})
            assert again.status_code == 304  # caching still works
            a[f"etag_{name}"] = int(r.headers["ETag"].strip('"')[:15], 16)
            a[f"size_{name}"] = int(r.headers["Content-Length"])
            headers[(case_id, name)] = {k: v for k, v in r.headers.items() if k not in ("ETag", "Content-Length")}
    return attrs, headers


def _best_threshold_accuracy(values: np.ndarray, labels: np.ndarray) -> float:
    """Best in-sample accuracy of predicting ``labels`` by ``values > t`` or ``values <= t`` over all t."""
    order = np.argsort(values, kind="stable")
    v, y = values[order], labels[order]
    best = 0.5
    for k in range(len(y) + 1):  # first k predicted 0, the rest 1 (and the mirror); never between equal values
        if 0 < k < len(y) and v[k - 1] == v[k]:
            continue
        acc = (np.sum(y[:k] == 0) + np.sum(y[k:] == 1)) / len(y)
        best = max(best, acc, 1 - acc)
    return float(best)


def _neighbour_partner_rate(values: np.ndarray, subjects: list[str]) -> float:
    """Fraction of cases whose neighbour in the attribute's order (either side) is the same subject's other case."""
    order = np.argsort(values, kind="stable")
    s = [subjects[i] for i in order]
    hits = sum((i > 0 and s[i - 1] == s[i]) or (i + 1 < len(s) and s[i + 1] == s[i]) for i in range(len(s)))
    return hits / len(s)


def test_no_served_attribute_predicts_source_or_pairs_cases(big_study):
    attrs, headers = _served(big_study)
    key = {r["case_id"]: r for r in read_key(big_study)}
    ids = sorted(attrs)
    labels = np.array([key[c]["source"] == "synthetic" for c in ids], dtype=int)
    subjects = [key[c]["subject"] for c in ids]
    names = sorted(attrs[ids[0]])
    assert {"id", "position_R1", "position_R2", "etag_stack.nii", "size_slice_000.png"} <= set(names)
    for name in names:
        values = np.array([attrs[c][name] for c in ids], dtype=float)
        assert _best_threshold_accuracy(values, labels) < 0.9, name
        if len(set(values)) > N_SUBJECTS:  # attributes that take one value per subject pair nothing new
            assert _neighbour_partner_rate(values, subjects) < 0.5, name
    # Sizes, per-case info and header sets are the same for a subject's real and synthetic case.
    for name in names:
        if name.startswith(("size_", "info")):
            for subject in set(subjects):
                pair = [attrs[c][name] for c in ids if key[c]["subject"] == subject]
                assert pair[0] == pair[1], (name, subject)
    assert len({attrs[c]["size_slice_000.png"] for c in ids}) == 1  # PNGs padded to one size study-wide
    # The NIfTI header readers download (descrip, intent, scaling...) is byte-identical for all cases: the
    # "SYNTHETIC" marks of synthesized files never reach a case.
    assert len({(big_study / "cases" / c / "stack.nii").read_bytes()[:352] for c in ids}) == 1
    assert len({json.dumps(sorted(h)) for h in headers.values()}) <= 2  # one header set per file kind


def test_reading_orders_keep_a_subjects_cases_apart(big_study):
    manifest = json.loads((big_study / "manifest.json").read_text())
    subject = {r["case_id"]: r["subject"] for r in read_key(big_study)}
    gap = manifest["min_gap"]
    assert gap == 5  # the default, possible with 12 subjects
    for order in manifest["readers"].values():
        where: dict[str, list[int]] = {}
        for i, cid in enumerate(order):
            where.setdefault(subject[cid], []).append(i)
        assert min(abs(a - b) for a, b in where.values()) >= gap


def test_ids_are_not_recoverable_from_the_seed(big_study):
    """The old attack: IDs were ``Random(seed).getrandbits(40)`` in build order; no small seed explains them."""
    ids = set(json.loads((big_study / "manifest.json").read_text())["cases"])
    for seed in range(500):
        rng = random.Random(seed)
        assert not {f"c{rng.getrandbits(40):010x}" for _ in range(2 * N_SUBJECTS)} & ids, seed


def test_reading_order_is_uniform_over_valid_orders_and_respects_the_gap():
    ids = [f"c{i}" for i in range(8)]
    subject_of = {c: f"s{i // 2}" for i, c in enumerate(ids)}
    counts: dict[tuple, int] = {}
    first_is_real = 0
    for seed in range(3000):
        order = reading_order(ids, subject_of, 2, random.Random(seed))
        assert sorted(order) == ids
        assert all(subject_of[a] != subject_of[b] for a, b in zip(order, order[1:]))
        counts[tuple(order)] = counts.get(tuple(order), 0) + 1
        first_is_real += int(order[0][1:]) % 2 == 0  # even index = the "real" case here
    assert 0.45 < first_is_real / 3000 < 0.55  # neither source comes first more often
    assert len(counts) > 500  # many different orders, not a few fixed patterns


def test_access_log_never_shows_a_token():
    line = '"GET /api/SeCrEt-tok_en/cases/c0123456789/stack.nii HTTP/1.1" 200 -'
    assert redact_tokens(line) == '"GET /api/<token>/cases/c0123456789/stack.nii HTTP/1.1" 200 -'
    assert redact_tokens("GET /r/abc?x=1 HTTP/1.1") == "GET /r/<token>?x=1 HTTP/1.1"
