"""Every bad value is refused where it enters, in one line naming the key or file, before anything is written."""

from __future__ import annotations

import json
import socket

import nibabel as nib
import numpy as np
import pytest

BAD_TRAIN_VALUES = [
    ("train.batch_size=0", "train.batch_size"),
    ("train.batch_size=-1", "train.batch_size"),
    ("train.lr=-1", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("train.lr=nan", "train.lr"),
    ("train.lr=inf", "train.lr"),
    ("data.image_size=0", "data.image_size"),
    ("data.image_size=63", "data.image_size"),
    ("data.image_size=20", "data.image_size"),  # not a multiple of 2**3 = the tiny U-Net's depth
    ("model.generator_kwargs={base_channels: 4, num_downs: 6}", "data.image_size"),  # deeper than 16 px allows
    ("data.context_slices=2", "data.context_slices"),
    ("data.context_slices=0", "data.context_slices"),
    ("train.log_every=0", "train.log_every"),
    ("train.val_every=0", "train.val_every"),
    ("train.ckpt_every=-5", "train.ckpt_every"),
    ("data.norm=minmax", "data.norm"),
    ("train.steps=0", "train.steps"),
    ("train.grad_accum=0", "train.grad_accum"),
    ("train.decay_start=2", "train.decay_start"),
    ("train.decay_start=-0.5", "train.decay_start"),
    ("train.out_dir=", "train.out_dir"),
    ("train.beta1=1.0", "train.beta1"),
    ("train.schedule=step", "train.schedule"),
    ("train.amp_dtype=int8", "train.amp_dtype"),
    ("data.norm_percentiles=[99, 1]", "data.norm_percentiles[1]"),
    ("data.norm_percentiles=[1, 2, 3]", "data.norm_percentiles"),
    ("data.val_fraction=0.8", "data.val_fraction + data.test_fraction"),
    ("data.min_foreground=1.5", "data.min_foreground"),
    ("loss.pix2pix.lambda_l1=-1", "loss.pix2pix.lambda_l1"),
    ("loss.pix2pix.lambda_l1=nan", "loss.pix2pix.lambda_l1"),
    ("loss.gan_mode=wasserstein", "loss.gan_mode"),
    ("infer.batch_size=0", "infer.batch_size"),
]


@pytest.mark.parametrize(("override", "key"), BAD_TRAIN_VALUES, ids=[o for o, _ in BAD_TRAIN_VALUES])
def test_bad_train_value_refused_before_any_write(cli, tiny, tiny_root, tmp_path, override, key):
    out = tmp_path / "run"
    args = [*tiny, f"data.root={tiny_root}", f"train.out_dir={out}"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    line = cli("train", cfg, *args, override).refused(key)
    assert "\\n" not in line
    assert not out.exists()  # no splits.json, no config.yaml, no folder: refused before anything was written
    assert not (tmp_path / "splits.json").exists()


def test_binary_config_file_is_named(cli, tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    cli("train", path).refused(str(path), "YAML")


@pytest.mark.parametrize(("option", "value"), [
    ("--misregistration-mm", "inf"), ("--misregistration-mm", "nan"), ("--misregistration-mm", "-1"),
    ("--misregistration-mm", "1e9"), ("--subjects", "0"), ("--subjects", "-3"),
    ("--stir-te", "nan"), ("--stir-te", "inf"), ("--stir-te", "500"), ("--stir-te", "0"),
])
def test_phantom_options_finite_and_in_range(cli, tmp_path, option, value):
    out = tmp_path / "ph"
    cli("phantom", "--out", out, "--preset", "tiny", "--subjects", "1", option, value).refused(option)
    assert not out.exists()


@pytest.mark.parametrize("port", ["-1", "99999", "65536", "http"])
def test_bad_ports_refused(cli, study, port):
    cli("reader-study", "serve", study, "--port", port).refused("--port")


def test_busy_port_is_named(cli, study):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        cli("reader-study", "serve", study, "--port", port).refused(f"127.0.0.1:{port}", "cannot listen")


def test_check_port_in_the_library():
    from synthseq.errors import ConfigError
    from synthseq.reader_study.app import check_port

    assert check_port(0) == 0 and check_port(65535) == 65535
    for bad in (-1, 65536, 8000.0, True, "80"):
        with pytest.raises(ConfigError, match="--port"):
            check_port(bad)


# -------------------------------------------------------------------------------------------------- NIfTI
def _nifti(path, data, affine, **header):
    img = nib.Nifti1Image(data, affine)
    for k, v in header.items():
        img.header[k] = v
    nib.save(img, str(path))
    return path


def _huge_header(path, dims):
    """A valid NIfTI-1 header claiming ``dims`` voxels, followed by only a few bytes of data."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(dims)
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(np.eye(4), code=1)
    with open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


@pytest.mark.parametrize("dims", [(2000, 2000, 2000), (30000, 30000, 2), (1100, 1024, 1024)])
def test_nifti_header_too_large_refused_before_allocation(cli, tmp_path, dims):
    path = _huge_header(tmp_path / "huge.nii", dims)
    cli("info", path).refused(str(path), "voxels")


def test_rgb_nifti_refused(cli, tmp_path):
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp_path / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(path))
    cli("info", path).refused(str(path), "RGB")


@pytest.mark.parametrize("affine", [
    np.diag([1.0, 0.0, 1.0, 1.0]),                                   # a zero voxel size
    np.array([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),  # two axes the same direction
    np.diag([1.0, np.nan, 1.0, 1.0]),
    np.diag([1.0, np.inf, 1.0, 1.0]),
], ids=["zero-zoom", "collinear", "nan", "inf"])
def test_singular_or_nonfinite_affine_refused(cli, tmp_path, affine):
    path = tmp_path / "bad_affine.nii"
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    img.set_qform(None, code=0)
    nib.save(img, str(path))
    raw = bytearray(path.read_bytes())  # write the sform rows by hand: nibabel refuses to store a NaN affine
    raw[280:328] = np.asarray(affine[:3], dtype="<f4").tobytes()
    path.write_bytes(bytes(raw))
    line = cli("info", path).refused(str(path))
    assert "affine" in line


def test_good_nifti_still_reads(cli, tmp_path):
    path = _nifti(tmp_path / "ok.nii.gz", np.arange(64, dtype=np.float32).reshape(4, 4, 4), np.diag([1, 2, 3, 1.0]))
    result = cli("info", "--json", path)
    assert result.rc == 0 and json.loads(result.out)["shape"] == [4, 4, 4]


# ---------------------------------------------------------------------------------------------- web app
def _client(study):
    from synthseq.reader_study.access import load_or_create_tokens
    from synthseq.reader_study.app import create_app

    token = load_or_create_tokens(study, ["R1"])["R1"]
    order = json.loads((study / "manifest.json").read_text())["readers"]["R1"]
    return create_app(study).test_client(), token, order[0]


@pytest.mark.parametrize("body", [
    b"[" * 5000 + b"]" * 5000,
    b'{"call": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"{" * 3000,
    b"{'call': 'real'}",
    b"\xff\xfe\x00garbage",
    b"",
    b"[1, 2]",
    b'"real"',
    b"null",
], ids=["deep-array", "deep-in-object", "unclosed", "single-quotes", "not-utf8", "empty", "array", "string",
        "null"])
def test_malformed_or_deep_json_gets_400(study, body):
    client, token, case = _client(study)
    for url in (f"/api/{token}/answer/{case}", f"/api/{token}/time/{case}"):
        r = client.post(url, data=body, content_type="application/json")
        assert r.status_code == 400, (url, r.status_code)
        assert "error" in r.get_json()


@pytest.mark.parametrize("seconds", [-1, 0, 1e9, "12", True, None, float("nan")])
def test_reading_time_values_checked(study, seconds):
    client, token, case = _client(study)
    body = json.dumps({"seconds": seconds}).encode()  # NaN goes out as the literal NaN, which Python reads back
    assert client.post(f"/api/{token}/time/{case}", data=body, content_type="application/json").status_code == 400


def test_reading_time_accumulates(study):
    client, token, case = _client(study)
    for s in (1.5, 2.0):
        r = client.post(f"/api/{token}/time/{case}", json={"seconds": s})
    assert r.status_code == 200 and r.get_json()["seconds"] == pytest.approx(3.5)


# ----------------------------------------------------------------------------------------- corrupt SQLite
@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\0" + b"\x13" * 4000, b"\0"],
                         ids=["text", "bad-pages", "one-byte"])
def test_corrupt_answers_database_named(cli, study, tmp_path, content):
    db = study / "answers.sqlite"
    db.write_bytes(content)
    cli("reader-study", "export", study, "--out", tmp_path / "a.csv").refused(str(db))
    cli("reader-study", "analyze", study, "--out", tmp_path / "rep").refused(str(db))
    cli("reader-study", "serve", study, "--port", "0").refused(str(db))
    assert db.read_bytes() == content  # named, not "repaired"
