"""Typed configuration: dataclasses loaded from YAML, overridable as ``key.sub=value``.

Every run is described by a :class:`Config` with five sections (``data``, ``model``, ``loss``, ``train``,
``infer``). YAML files and command-line overrides are checked against the dataclasses: an unknown key or a
value of the wrong type raises :class:`~synthseq.errors.ConfigError` naming the key. The resolved config is
written into every run directory and stored inside every checkpoint.

The machinery (:func:`load_typed`, :func:`from_dict`, :func:`to_dict`, :func:`apply_overrides`) works for any
dataclass, so other parts of the package (e.g. downstream classifiers) define their own config classes.

>>> cfg = load_config(None, ["train.steps=10", "model.kind=cyclegan"])
>>> cfg.train.steps, cfg.model.kind
(10, 'cyclegan')
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError
from .utils import atomic_write_text

T = TypeVar("T")

#: The shipped YAML configs (``configs/`` of the repository, installed with the package as ``synthseq/configs``).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


# ------------------------------------------------------------------------------------------- value checks
def check_int(key: str, value: Any, low: int | None = 1, high: int | None = None) -> None:
    """ConfigError naming ``key`` unless ``value`` is an integer in ``[low, high]`` (None: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) or (
            high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{key}: expected an integer {bound}, got {value!r}")


def check_float(key: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """ConfigError naming ``key`` unless ``value`` is a finite number within the given bounds."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise ConfigError(f"{key}: expected a finite number {' and '.join(p for p in (lo, hi) if p)}, got {value!r}"
                          .replace("number  ", "number ").replace(" , got", ", got"))


def check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")


# ----------------------------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    """Where the volumes are and how slices are made."""

    root: str = "data/phantom"  #: phantom-layout folder, BIDS folder or manifest CSV (synthseq.data.layout)
    bids: dict[str, Any] = field(default_factory=dict)  #: BIDS: sequence key -> entity pattern(s), e.g. STIR: acq-tirm_T2w
    sessions: str = "separate"  #: BIDS sessions: "separate" subjects | "grouped" (split by participant)
    splits: str | None = None  #: splits file (JSON train/val/test lists, or CSV subject,split); beats the fractions
    folds: int = 0  #: k-fold: K > 1 makes fold data.fold of K the test set
    fold: int = 0
    slice_plane: str = "sagittal"  #: "sagittal" | "axial" | "coronal" | "acquisition" (across the thickest voxels)
    input_keys: list[str] = field(default_factory=lambda: ["T2w"])  #: input sequences, stacked as channels
    target_key: str = "STIR"
    paired: bool = True  #: False: T2w and STIR pools drawn independently (CycleGAN)
    unpaired_pools: str = "shared"  #: unpaired: "shared" (both pools from all train subjects) | "disjoint" (halves)
    image_size: int = 256  #: square training crop (pixels)
    pixel_spacing_mm: float | None = None  #: in-plane resampling before cropping; None keeps native spacing
    context_slices: int = 1  #: 2.5D: odd number of neighbouring sagittal slices as channels (1 = 2D)
    norm: str = "percentile"  #: "percentile" | "zscore"
    norm_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    val_fraction: float = 0.2  #: fraction of SUBJECTS held out for validation
    test_fraction: float = 0.2  #: fraction of SUBJECTS held out for testing
    split_seed: int = 0
    min_foreground: float = 0.05  #: slices with a smaller body fraction are not sampled
    register: bool = False  #: rigidly register each target onto its input grid (NCC) after affine resampling
    lesion_key: str | None = None  #: e.g. "lesions": per-subject lesion map (code > 0 = lesion) for loss.pix2pix.lambda_lesion
    lesion_slice_weight: float = 1.0  #: paired + lesion_key: slices with a lesion drawn this many times as often (> 1 also keeps the lesion in the crop)
    label_key: str | None = None  #: e.g. "labels": tissue label map (phantom codes): each lesion's reference tissue for loss.pix2pix.lambda_reference, tissue classes for lambda_tissue
    augment: bool = True
    gpu_resident: bool | None = None  #: slice bank resident on the training device (None/true); false: DataLoader
    num_workers: int = 0

    def validate(self, prefix: str = "data") -> DataConfig:
        """Ranges of every value (ConfigError naming the key); returns self."""
        check_int(f"{prefix}.image_size", self.image_size, 8)
        check_int(f"{prefix}.context_slices", self.context_slices, 1)
        if self.context_slices % 2 == 0:
            raise ConfigError(f"{prefix}.context_slices: expected an odd number (the slice and as many neighbours "
                              f"on each side), got {self.context_slices}")
        check_choice(f"{prefix}.norm", self.norm, ("percentile", "zscore"))
        check_choice(f"{prefix}.unpaired_pools", self.unpaired_pools, ("shared", "disjoint"))
        if len(self.norm_percentiles) != 2:
            raise ConfigError(f"{prefix}.norm_percentiles: expected [low, high], got {self.norm_percentiles!r}")
        low, high = self.norm_percentiles
        check_float(f"{prefix}.norm_percentiles[0]", low, 0.0, 100.0)
        check_float(f"{prefix}.norm_percentiles[1]", high, low, 100.0, low_open=True)
        if self.pixel_spacing_mm is not None:
            check_float(f"{prefix}.pixel_spacing_mm", self.pixel_spacing_mm, 0.0, low_open=True)
        check_float(f"{prefix}.val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        check_float(f"{prefix}.test_fraction", self.test_fraction, 0.0, 1.0, high_open=True)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(f"{prefix}.val_fraction + {prefix}.test_fraction: leave subjects to train on, got "
                              f"{self.val_fraction} + {self.test_fraction}")
        check_float(f"{prefix}.min_foreground", self.min_foreground, 0.0, 1.0)
        check_int(f"{prefix}.num_workers", self.num_workers, 0)
        return self


@dataclass
class ModelConfig:
    """Which GAN and which networks (kwargs go to ``synthseq.models.create_model``)."""

    kind: str = "pix2pix"  #: "pix2pix" | "cyclegan"
    generator: str = "unet"
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    discriminator: str = "patchgan"
    discriminator_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pix2PixLossConfig:
    """pix2pix's generator objective (``loss.pix2pix``; classic pix2pix: L1 weight 100, nothing else)."""

    lambda_l1: float = 100.0
    lambda_log_l1: float = 0.0  #: weight of the L1 of log intensities (relative error: weighs dark tissue up to 20x)
    lambda_ssim: float = 0.0  #: weight of 1 - SSIM (the metric's SSIM)
    lambda_gradient: float = 0.0  #: weight of the L1 of image-gradient differences (edges drawn as sharp as the target's)
    lambda_lesion: float = 0.0  #: extra L1 averaged over lesion pixels only (needs data.lesion_key)
    lambda_reference: float = 0.0  #: extra L1 averaged over each lesion's normal reference tissue (needs data.lesion_key and data.label_key)
    lambda_tissue: float = 0.0  #: extra L1 with every tissue class of data.label_key weighted equally (synthseq.codes.tissue_balance_weights)
    lambda_perceptual: float = 0.0  #: weight of LPIPS (backbone weights from the torch cache)
    lambda_lesion_gan: float = 0.0  #: adversarial term of a second discriminator on crops centred on lesions (needs data.lesion_key)
    lesion_crop: int = 32  #: side in pixels of those crops (must fit data.image_size)

    def validate(self, prefix: str = "loss.pix2pix") -> Pix2PixLossConfig:
        for f in dataclasses.fields(self):
            if f.name == "lesion_crop":
                check_int(f"{prefix}.{f.name}", self.lesion_crop, 8)
            else:
                check_float(f"{prefix}.{f.name}", getattr(self, f.name), 0.0)
        return self


@dataclass
class CycleGANLossConfig:
    """CycleGAN's objective (``loss.cyclegan``; the classic defaults)."""

    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  #: relative to lambda_cycle (0 disables)
    pool_size: int = 50  #: images per discriminator history pool (0 disables)

    def validate(self, prefix: str = "loss.cyclegan") -> CycleGANLossConfig:
        check_float(f"{prefix}.lambda_cycle", self.lambda_cycle, 0.0)
        check_float(f"{prefix}.lambda_identity", self.lambda_identity, 0.0)
        check_int(f"{prefix}.pool_size", self.pool_size, 0)
        return self


@dataclass
class LossConfig:
    """The adversarial loss shared by every GAN kind, and each built-in kind's own weights in its own section."""

    gan_mode: str = "auto"  #: "vanilla" | "lsgan" | "hinge" | "auto" (the kind's default: vanilla / lsgan)
    pix2pix: Pix2PixLossConfig = field(default_factory=Pix2PixLossConfig)
    cyclegan: CycleGANLossConfig = field(default_factory=CycleGANLossConfig)

    def validate(self, prefix: str = "loss") -> LossConfig:
        check_choice(f"{prefix}.gan_mode", self.gan_mode, ("auto", "vanilla", "lsgan", "hinge"))
        self.pix2pix.validate(f"{prefix}.pix2pix")
        self.cyclegan.validate(f"{prefix}.cyclegan")
        return self


#: Keys of synthseq 0.1.0's flat ``loss`` section and the kind section each one moved to (``migrate_config``).
LEGACY_LOSS_KEYS = {"lambda_l1": "pix2pix", "lambda_ssim": "pix2pix", "lambda_lesion": "pix2pix",
                    "lambda_perceptual": "pix2pix", "lambda_cycle": "cyclegan", "lambda_identity": "cyclegan",
                    "pool_size": "cyclegan"}


def migrate_config(data: dict[str, Any], source: str = "config", warn: bool = True) -> dict[str, Any]:
    """A run-config dict of synthseq 0.1.0 (flat ``loss`` keys) in today's layout (``loss.<kind>.<key>``).

    Checkpoints and run folders of 0.1.0 keep loading; a user's YAML with an old key gets one warning per key
    saying where it moved (the value is kept).
    """
    loss = data.get("loss") if isinstance(data, dict) else None
    if not isinstance(loss, dict) or not any(k in LEGACY_LOSS_KEYS for k in loss):
        return data
    loss = dict(loss)
    for key in [k for k in loss if k in LEGACY_LOSS_KEYS]:
        kind = LEGACY_LOSS_KEYS[key]
        section = dict(loss.get(kind) or {})
        section.setdefault(key, loss.pop(key))
        loss[kind] = section
        if warn:
            warnings.warn(f"{source}: loss.{key} is now loss.{kind}.{key} (read as that)", FutureWarning,
                          stacklevel=3)
    return {**data, "loss": loss}


@dataclass
class TrainConfig:
    """The training loop."""

    out_dir: str = "runs/pix2pix"
    steps: int = 20000  #: optimizer steps
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    schedule: str = "linear"  #: "linear" (constant, then linear decay to 0) | "cosine" | "constant"
    decay_start: float = 0.5  #: fraction of steps after which the linear decay starts
    grad_accum: int = 1
    amp: bool = True  #: bf16 autocast on CUDA (ignored on CPU)
    amp_dtype: str = "bfloat16"  #: "bfloat16" (no loss scaling) | "float16" (with a GradScaler)
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    cpu_threads: int = 0  #: torch intra-op threads when training on the CPU (0: torch's default)
    val_every: int = 1000
    log_every: int = 50
    image_every: int = 1000
    ckpt_every: int = 1000
    resume: bool = False
    init_from: str | None = None  #: fine-tune: start from this checkpoint's weights (fresh optimizer and schedule)
    #: > 0: before every validation and checkpoint, re-estimate the generator's batch-norm statistics on this many
    #: whole training slices, as synthesis feeds them (``synthseq.training.batchnorm``); 0: keep the running ones
    bn_recalibration_slices: int = 0
    #: what ``best.pt`` holds: "validation" (the step with the highest validation SSIM) | "final" (the last step;
    #: validation is still run and logged). With a few validation subjects the SSIM ranking of late steps is noise
    #: (README, "Sixteenth session")
    best_checkpoint: str = "validation"
    seed: int = 0

    def validate(self, prefix: str = "train") -> TrainConfig:
        """Ranges of the training loop's values (ConfigError naming the key); returns self."""
        if not str(self.out_dir).strip():
            raise ConfigError(f"{prefix}.out_dir: empty; name the run directory (e.g. runs/pix2pix)")
        for key in ("steps", "batch_size", "grad_accum", "val_every", "log_every", "image_every", "ckpt_every"):
            check_int(f"{prefix}.{key}", getattr(self, key), 1)
        check_int(f"{prefix}.cpu_threads", self.cpu_threads, 0)
        check_int(f"{prefix}.bn_recalibration_slices", self.bn_recalibration_slices, 0)
        check_float(f"{prefix}.lr", self.lr, 0.0, low_open=True)
        check_float(f"{prefix}.beta1", self.beta1, 0.0, 1.0, high_open=True)
        check_float(f"{prefix}.beta2", self.beta2, 0.0, 1.0, high_open=True)
        check_choice(f"{prefix}.schedule", self.schedule, ("linear", "cosine", "constant"))
        check_choice(f"{prefix}.best_checkpoint", self.best_checkpoint, ("validation", "final"))
        check_float(f"{prefix}.decay_start", self.decay_start, 0.0, 1.0)
        check_choice(f"{prefix}.amp_dtype", self.amp_dtype, ("bfloat16", "float16"))
        return self


@dataclass
class InferConfig:
    """Defaults for synthesis."""

    batch_size: int = 32
    device: str = "auto"
    uncertainty_samples: int = 8  #: test-time flips x dropout samples for --uncertainty

    def validate(self, prefix: str = "infer") -> InferConfig:
        check_int(f"{prefix}.batch_size", self.batch_size, 1)
        check_int(f"{prefix}.uncertainty_samples", self.uncertainty_samples, 1)
        return self


@dataclass
class Config:
    """A whole run."""

    name: str = "synthseq"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)

    def validate(self) -> Config:
        """Check every section's value ranges and the ones that involve two sections; returns self.

        Raises :class:`ConfigError` with one line naming the key, before any file is written.
        """
        self.data.validate()
        self.loss.validate()
        self.train.validate()
        self.infer.validate()
        multiple = _generator_size_multiple(self.model)
        if multiple and self.data.image_size % multiple:
            raise ConfigError(f"data.image_size: {self.data.image_size} is not a multiple of {multiple}, which "
                              f"the {self.model.generator} generator needs (its depth); use a multiple of {multiple} "
                              f"or a shallower generator (model.generator_kwargs.num_downs)")
        crop = self.loss.pix2pix.lesion_crop
        if self.loss.pix2pix.lambda_lesion_gan > 0 and crop > self.data.image_size:
            raise ConfigError(f"loss.pix2pix.lesion_crop: {crop} px crops do not fit data.image_size "
                              f"{self.data.image_size}")
        return self


def _generator_size_multiple(model: ModelConfig) -> int | None:
    """What H and W must be multiples of for the built-in generators (None: not known here)."""
    kwargs = model.generator_kwargs or {}
    if model.generator == "unet":
        depth = kwargs.get("num_downs", 8)
        check_int("model.generator_kwargs.num_downs", depth, 2, 12)
        return 2**depth
    if model.generator == "resnet":
        return 4
    return None


# -------------------------------------------------------------------------------------------- machinery
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting int -> float, lists -> tuples where declared)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_dict(cls: type[T], data: dict[str, Any], *, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain dict, rejecting unknown keys and wrong types (ConfigError)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    known = _fields(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise ConfigError(f"unknown config key {full!r} (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, known[key], full)
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict of a (nested) config dataclass."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], value)``; the value is parsed as YAML (1, 1.5, true, [1, 2])."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value (e.g. train.steps=100)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as exc:  # {a: 1, a: 2} would otherwise keep the last silently, as in a config file
        raise ConfigError(f"override {text!r}: {exc}") from None
    except yaml.YAMLError:  # not YAML: the text itself (a path with a colon, say)
        value = raw
    return key.split("."), value


def apply_overrides(obj: T, overrides: Sequence[str]) -> T:
    """Return a copy of dataclass ``obj`` with ``key.sub=value`` overrides applied and type-checked."""
    data = to_dict(obj)
    for text in overrides:
        path, value = parse_override(text)
        if isinstance(obj, Config) and len(path) == 2 and path[0] == "loss" and path[1] in LEGACY_LOSS_KEYS:
            kind = LEGACY_LOSS_KEYS[path[1]]
            warnings.warn(f"override {text!r}: loss.{path[1]} is now loss.{kind}.{path[1]} (read as that)",
                          FutureWarning, stacklevel=2)
            path = ["loss", kind, path[1]]
        node = data
        for i, part in enumerate(path[:-1]):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise ConfigError(f"unknown config key {'.'.join(path[: i + 1])!r} in override {text!r}")
            node = node[part]
        if path[-1] not in node and not _is_free_mapping(type(obj), path):
            raise ConfigError(f"unknown config key {'.'.join(path)!r} in override {text!r}")
        node[path[-1]] = value
    return from_dict(type(obj), data)


def _is_free_mapping(cls: type, path: list[str]) -> bool:
    """True if ``path[:-1]`` names a ``dict[str, Any]`` field (e.g. model.generator_kwargs.depth)."""
    tp: Any = cls
    for part in path[:-1]:
        if not dataclasses.is_dataclass(tp):
            return False
        tp = _fields(tp).get(part)
        if tp is None:
            return False
    return typing.get_origin(tp) is dict


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently).

    Only the mapping's own keys are compared: a key that overrides one brought in by a ``<<:`` merge is YAML's
    intended use, and a merge key itself is left to the base constructor, as is an unhashable key (its own error).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                break
            if duplicate:
                raise _DuplicateKey(f"key {key!r} given twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line ConfigError naming the file on any problem (a duplicate key too)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except (UnicodeDecodeError, ValueError) as exc:  # a binary file; YAML's reader refuses control characters too
        raise ConfigError(f"{path}: not a YAML text file ({type(exc).__name__})") from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: invalid YAML{line}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_typed(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load dataclass ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides."""
    data = load_yaml(path) if path is not None else {}
    if cls is Config:
        data = migrate_config(data, str(path) if path is not None else "config")
    try:
        obj = from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None
    return apply_overrides(obj, overrides)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a run :class:`Config` from YAML plus ``key.sub=value`` overrides; values are range-checked."""
    cfg = load_typed(Config, path, overrides)
    try:
        return cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def dump_config(obj: Any) -> str:
    """YAML text of a config dataclass (keys in declaration order)."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def save_config(obj: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    return atomic_write_text(path, dump_config(obj))
