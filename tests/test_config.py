"""Typed config: YAML round trip, dotted overrides, unknown keys and wrong types rejected."""

from pathlib import Path

import pytest
import yaml

from synthseq.config import (
    Config,
    apply_overrides,
    dump_config,
    from_dict,
    load_config,
    parse_override,
    save_config,
    to_dict,
)
from synthseq.errors import ConfigError


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["train.steps=123", "model.kind=cyclegan", "data.norm_percentiles=[1, 99]"])
    path = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["train"]["steps"] == 123
    assert dump_config(again) == dump_config(cfg)


def test_overrides_nested_bool_float_and_free_mapping():
    cfg = load_config(None, [
        "train.amp=false", "train.lr=1e-3", "loss.pix2pix.lambda_l1=50", "data.pixel_spacing_mm=null",
        "model.generator_kwargs.num_downs=6", "model.generator_kwargs.norm=instance", "name=run 1",
    ])
    assert cfg.train.amp is False
    assert cfg.train.lr == pytest.approx(1e-3)
    assert isinstance(cfg.loss.pix2pix.lambda_l1, float) and cfg.loss.pix2pix.lambda_l1 == 50.0  # int -> float
    assert cfg.data.pixel_spacing_mm is None
    assert cfg.model.generator_kwargs == {"num_downs": 6, "norm": "instance"}
    assert cfg.name == "run 1"


def test_yaml_file_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 5\n  batch_size: 2\ndata:\n  image_size: 64\nmodel:\n  generator_kwargs: {num_downs: 6}\n")
    cfg = load_config(path, ["train.steps=7"])
    assert (cfg.train.steps, cfg.train.batch_size, cfg.data.image_size) == (7, 2, 64)
    assert cfg.loss.pix2pix.lambda_l1 == Config().loss.pix2pix.lambda_l1  # untouched sections keep defaults


@pytest.mark.parametrize("override, key", [
    ("train.stepz=5", "train.stepz"),
    ("nosuchsection.x=1", "nosuchsection"),
    ("train.steps.deep=1", "train.steps"),
])
def test_unknown_override_key_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: 0.1\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "bad.yaml" in msg and "train.learning_rate" in msg and "\n" not in msg


@pytest.mark.parametrize("override, key", [
    ("train.steps=ten", "train.steps"),
    ("train.steps=1.5", "train.steps"),
    ("train.amp=maybe", "train.amp"),
    ("train.lr=fast", "train.lr"),
    ("data.input_keys=T2w", "data.input_keys"),
    ("data.norm_percentiles=[1, high]", "data.norm_percentiles[1]"),
])
def test_wrong_type_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, [override])


@pytest.mark.parametrize("overrides, match", [
    (["loss.pix2pix.lesion_crop=4"], r"loss\.pix2pix\.lesion_crop: expected an integer >= 8"),
    (["loss.pix2pix.lambda_lesion_gan=1", "loss.pix2pix.lesion_crop=300"],
     r"loss\.pix2pix\.lesion_crop: 300 px crops do not fit data\.image_size 256"),
])
def test_lesion_crop_is_checked(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)
    load_config(None, ["loss.pix2pix.lambda_lesion_gan=1", "loss.pix2pix.lesion_crop=256"])  # image_size 256


def test_parse_override_values():
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=x=y") == (["a"], "x=y")
    with pytest.raises(ConfigError):
        parse_override("novalue")
    with pytest.raises(ConfigError):
        parse_override(".x=1")


def test_override_with_a_duplicate_key_is_refused():
    # the same rule as a config file: {a: 1, a: 2} must not silently keep the last
    with pytest.raises(ConfigError, match=r"override .*generator_kwargs.*'dropout' given twice"):
        load_config(None, ["model.generator_kwargs={dropout: 0.5, dropout: 0.0}"])
    assert parse_override("a={x: 1, y: 2}") == (["a"], {"x": 1, "y": 2})


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_duplicate_yaml_key_is_refused_with_its_line(tmp_path):
    # plain YAML keeps the last of two equal keys silently: a config edited twice would train on the wrong value
    nested = tmp_path / "twice.yaml"
    nested.write_text("train:\n  steps: 3\n  lr: 0.1\n  steps: 4\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: key 'steps' given twice \(line 4\)"):
        load_config(nested)
    top = tmp_path / "top.yaml"
    top.write_text("train: {steps: 3}\nname: a\ntrain: {steps: 4}\n")
    with pytest.raises(ConfigError, match="key 'train' given twice"):
        load_config(top)
    ok = tmp_path / "ok.yaml"  # equal keys in different mappings are fine
    ok.write_text("data: {norm: percentile}\nmodel: {generator_kwargs: {norm: instance}}\ntrain: {steps: 3}\n")
    cfg = load_config(ok)
    assert (cfg.data.norm, cfg.model.generator_kwargs["norm"], cfg.train.steps) == ("percentile", "instance", 3)
    merged = tmp_path / "merged.yaml"  # an explicit key over a merged-in one is YAML's intent, not a duplicate
    merged.write_text("train:\n  <<: {steps: 3, lr: 0.1}\n  steps: 5\n")
    cfg = load_config(merged)
    assert (cfg.train.steps, cfg.train.lr) == (5, 0.1)
    unhashable = tmp_path / "unhashable.yaml"  # still the one-line YAML error, not a TypeError
    unhashable.write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match="unhashable.yaml: invalid YAML"):
        load_config(unhashable)


def test_generic_machinery_on_section():
    cfg = from_dict(Config, {"train": {"steps": 3}})
    assert to_dict(apply_overrides(cfg, ["train.steps=4"]))["train"]["steps"] == 4
    assert cfg.train.steps == 3  # overrides return a copy


def test_every_shipped_config_loads_into_its_dataclass():
    from synthseq.config import load_typed
    from synthseq.downstream.classifier import ClassifierConfig
    from synthseq.downstream.outcome import OutcomeConfig
    from synthseq.downstream.utility import UtilityConfig

    kinds = {"classifier": ClassifierConfig, "outcome": OutcomeConfig, "utility": UtilityConfig}
    paths = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(paths) >= 9
    for path in paths:
        cls = kinds.get(path.stem.split("_")[0])
        cfg = load_typed(cls, path, []) if cls else load_config(path, [])
        if cls is None:  # a training config names its own run folder after itself
            assert cfg.name == path.stem and cfg.train.out_dir.endswith(path.stem), path.name


def test_flat_loss_keys_of_0_1_0_move_to_their_kind_section_with_a_warning(tmp_path):
    from synthseq.config import migrate_config

    path = tmp_path / "old.yaml"
    path.write_text("loss:\n  gan_mode: lsgan\n  lambda_l1: 20\n  pool_size: 3\n")
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(path, ["loss.lambda_identity=0.25"])
    moved = sorted(str(w.message).split(": ", 1)[-1] for w in caught)
    assert moved == ["loss.lambda_identity is now loss.cyclegan.lambda_identity (read as that)",
                     "loss.lambda_l1 is now loss.pix2pix.lambda_l1 (read as that)",
                     "loss.pool_size is now loss.cyclegan.pool_size (read as that)"]
    assert (cfg.loss.gan_mode, cfg.loss.pix2pix.lambda_l1) == ("lsgan", 20.0)
    assert (cfg.loss.cyclegan.pool_size, cfg.loss.cyclegan.lambda_identity) == (3, 0.25)
    assert migrate_config({"loss": {"lambda_cycle": 5}}, warn=False) == {"loss": {"cyclegan": {"lambda_cycle": 5}}}
    with pytest.raises(ConfigError, match="unknown config key 'loss.pix2pix.lambda_cycle'"):
        load_config(None, ["loss.pix2pix.lambda_cycle=1"])  # each kind's section holds only its own weights

