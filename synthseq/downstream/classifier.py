"""Subject-level multi-label injury classifiers on stacks of sagittal slices (MONAI networks).

Input of one subject: ``n_slices`` canonical sagittal slices (``synthseq.data.slicing.SagittalView``) spread
evenly over a ``slab_mm`` wide slab centred on the volume's middle, for each sequence of the input mode,
percentile-normalized per volume to [-1, 1] (``synthseq.data.normalize``, clipped) and resized to
``image_size`` squared: a tensor ``(C, image_size, image_size)`` with ``C = n_slices * n_sequences``, channels
ordered sequence-major (all T2w slices, then all STIR slices). A 2D MONAI DenseNet / ResNet maps it to one
logit per label.

Input modes: ``"t2w"``; ``"t2w+stir"`` (acquired STIR); ``"t2w+pseudostir"`` (STIR synthesized from the T2w
by a checkpoint, or read from a pseudo-STIR folder; see :mod:`synthseq.downstream.sources`). In the pseudo-STIR
mode the model is trained AND tested on pseudo-STIR, as it would be deployed where STIR is not acquired.

A saved model (``model.ssmodel``, :mod:`~synthseq.downstream.modelfile`: JSON + ``.npy`` weights + content hash,
no pickle) holds the config, labels and weights and loads alone (:meth:`InjuryClassifier.load`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import from_dict, to_dict
from ..data.layout import split_subjects
from ..errors import ConfigError, InputError
from ..io import Volume, load_volume
from ..utils import atomic_path, atomic_write_text, read_saved_model
from .dataset import check_labels, read_cohort, subject_file
from .sources import PseudoStirSource, Synth
from .stats import binary_report, json_safe

INPUT_MODES = ("t2w", "t2w+stir", "t2w+pseudostir")
NETWORKS = ("densenet", "resnet")
FORMAT = "synthseq-classifier"


@dataclass
class ClassifierConfig:
    """Everything needed to train (and later rebuild) an injury classifier."""

    data: str = "data/phantom"  #: phantom-layout folder (cohort.csv + sub-*/ volumes)
    out_dir: str = "runs/classifier"
    labels: list[str] = field(default_factory=lambda: ["fracture", "plc_injury", "cord_edema"])
    input: str = "t2w"  #: "t2w" | "t2w+stir" | "t2w+pseudostir"
    synthesis_checkpoint: str | None = None  #: pix2pix/CycleGAN checkpoint for "t2w+pseudostir"
    pseudo_stir_dir: str | None = None  #: or a folder of <subject>_pseudoSTIR.nii.gz
    network: str = "densenet"  #: "densenet" | "resnet" (2D MONAI networks)
    network_kwargs: dict = field(default_factory=dict)  #: overrides of the small default architecture
    image_size: int = 64  #: slices resized to image_size x image_size
    n_slices: int = 5  #: sagittal slices per sequence
    slab_mm: float = 16.0  #: left-right width of the slab the slices span (mm)
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: bool = True  #: random intensity scale/offset and +-2 px shifts during training
    test_fraction: float = 0.3  #: fraction of subjects held out (subject-level, stratified)
    split_seed: int = 0
    threshold: float = 0.5  #: probability threshold for sensitivity / specificity
    n_boot: int = 1000  #: bootstrap resamples for AUC CIs
    gradcam_subjects: int = 4  #: test subjects with Grad-CAM overlays written
    device: str = "auto"
    seed: int = 0

    def validate(self) -> ClassifierConfig:
        check_labels(self.labels)
        if self.input not in INPUT_MODES:
            raise ConfigError(f"input: unknown input {self.input!r} (use one of {', '.join(INPUT_MODES)})")
        if self.network not in NETWORKS:
            raise ConfigError(f"network: unknown network {self.network!r} (use one of {', '.join(NETWORKS)})")
        for key in ("image_size", "n_slices", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be at least 1, got {getattr(self, key)}")
        return self

    @property
    def sequences(self) -> list[str]:
        return ["t2w"] if self.input == "t2w" else ["t2w", "stir"]


# ------------------------------------------------------------------------------------------------- inputs
def slab_indices(n_sagittal: int, slice_spacing_mm: float, n_slices: int, slab_mm: float) -> np.ndarray:
    """Indices of ``n_slices`` sagittal slices spread over ``slab_mm`` around the middle slice (clipped)."""
    centre = (n_sagittal - 1) / 2
    offsets = np.linspace(-slab_mm / 2, slab_mm / 2, n_slices) if n_slices > 1 else np.zeros(1)
    return np.clip(np.rint(centre + offsets / slice_spacing_mm), 0, n_sagittal - 1).astype(np.int64)


def subject_stack(volumes: list[Volume], cfg: ClassifierConfig) -> np.ndarray:
    """Sequence volumes of one subject (same grid) -> ``(C, image_size, image_size)`` float32 in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    from ..data.preprocess import Preprocessor
    from ..data.slicing import SagittalView

    view = SagittalView.from_affine(volumes[0].affine)
    pre = Preprocessor()
    parts = []
    for vol in volumes:
        if vol.shape != volumes[0].shape:
            raise InputError(f"{vol.name}: grid {vol.shape} differs from the T2w grid {volumes[0].shape}")
        y, _ = pre(vol.data, clip=True, name=vol.name)  # the one preprocessing rule (as the GAN's inputs)
        slices = view.to_slices(y)
        idx = slab_indices(slices.shape[0], view.slice_spacing(vol.spacing), cfg.n_slices, cfg.slab_mm)
        sel = torch.from_numpy(np.ascontiguousarray(slices[idx], dtype=np.float32))[None]
        parts.append(F.interpolate(sel, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                                   align_corners=False)[0])
    return torch.cat(parts).numpy()


def load_inputs(root: str | Path, subjects, cfg: ClassifierConfig, pseudo: PseudoStirSource | None) -> np.ndarray:
    """``(N, C, image_size, image_size)`` inputs for ``subjects`` of a phantom-layout folder."""
    out = []
    for s in subjects:
        t2w = load_volume(subject_file(root, s, "t2w"))
        vols = [t2w]
        if cfg.input == "t2w+stir":
            vols.append(load_volume(subject_file(root, s, "stir")))
        elif cfg.input == "t2w+pseudostir":
            if pseudo is None:
                raise ConfigError("input 't2w+pseudostir' needs synthesis_checkpoint or pseudo_stir_dir")
            vols.append(pseudo.get(s, t2w))
        out.append(subject_stack(vols, cfg))
    return np.stack(out)


# ------------------------------------------------------------------------------------------------- network
def build_network(cfg: ClassifierConfig, in_channels: int):
    """A small 2D MONAI network with ``in_channels`` inputs and one logit per label."""
    from monai.networks.nets import DenseNet, ResNet

    n_out = len(cfg.labels)
    if cfg.network == "densenet":
        kw = {"init_features": 16, "growth_rate": 8, "block_config": (2, 2, 2), "bn_size": 2, "dropout_prob": 0.1}
        kw.update(cfg.network_kwargs)
        return DenseNet(spatial_dims=2, in_channels=in_channels, out_channels=n_out, **kw)
    kw = {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 64]}
    kw.update(cfg.network_kwargs)
    return ResNet(spatial_dims=2, n_input_channels=in_channels, num_classes=n_out, **kw)


def gradcam_layer(cfg: ClassifierConfig) -> str:
    """The layer Grad-CAM reads (last feature map before pooling)."""
    return "class_layers.relu" if cfg.network == "densenet" else "layer4"


class InjuryClassifier:
    """A trained network with its config; ``predict(x)`` gives probabilities ``(N, L)``."""

    def __init__(self, cfg: ClassifierConfig, net, in_channels: int, metrics: dict | None = None) -> None:
        self.cfg, self.net, self.in_channels, self.metrics = cfg, net, in_channels, metrics or {}

    @property
    def labels(self) -> list[str]:
        return list(self.cfg.labels)

    def predict(self, x: np.ndarray, device: str = "cpu", batch_size: int = 16) -> np.ndarray:
        """``x`` ``(N, C, H, W)`` -> sigmoid probabilities ``(N, L)`` in [0, 1]."""
        import torch

        if x.shape[1] != self.in_channels:
            raise InputError(f"model expects {self.in_channels} input channels, data gives {x.shape[1]}")
        self.net.to(device).eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[i: i + batch_size]).to(device)
                out.append(torch.sigmoid(self.net(xb)).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def save(self, path: str | Path) -> Path:
        """Write a model file (:mod:`~synthseq.downstream.modelfile`): config + metrics as JSON, weights as
        ``.npy`` arrays; nothing in it can run code when loaded."""
        from .._version import __version__
        from .modelfile import write_model_file

        meta = {"synthseq_version": __version__, "config": to_dict(self.cfg), "in_channels": self.in_channels,
                "metrics": json.loads(json.dumps(json_safe(self.metrics))),
                "weights": list(self.net.state_dict())}
        arrays = {f"w{i:04d}": v.detach().cpu().numpy() for i, v in enumerate(self.net.state_dict().values())}
        return write_model_file(path, FORMAT, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> InjuryClassifier:
        import torch

        from .modelfile import read_model_file

        blob = read_saved_model(path, lambda p: vars(read_model_file(p, FORMAT, "classifier model")), FORMAT,
                                "classifier model")
        meta, arrays = blob["meta"], blob["arrays"]
        try:
            cfg = from_dict(ClassifierConfig, meta["config"])
            net = build_network(cfg, int(meta["in_channels"]))
            state = {k: torch.from_numpy(np.array(arrays[f"w{i:04d}"])) for i, k in enumerate(meta["weights"])}
            net.load_state_dict(state)
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: classifier model does not match its network "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        net.eval()
        return cls(cfg, net, int(meta["in_channels"]), meta.get("metrics"))


# ------------------------------------------------------------------------------------------------ training
def fit_network(cfg: ClassifierConfig, x: np.ndarray, y: np.ndarray) -> InjuryClassifier:
    """Train on ``x`` ``(N, C, H, W)`` and 0/1 targets ``y`` ``(N, L)``; class imbalance via ``pos_weight``."""
    import torch

    from ..utils import resolve_device, seed_everything

    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    net = build_network(cfg, x.shape[1]).to(device)
    pos = y.sum(0)
    pos_weight = torch.tensor(np.clip((len(y) - pos) / np.maximum(pos, 1), 1.0, 10.0), dtype=torch.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), cfg.batch_size):
            idx = order[i: i + cfg.batch_size]
            if len(idx) < 2 and len(xt) > 1:  # BatchNorm needs two samples
                continue
            xb, yb = xt[idx].clone(), yt[idx]
            if cfg.augment:
                scale = 1 + 0.1 * (torch.rand(len(idx), 1, 1, 1, generator=gen) - 0.5) * 2
                offset = 0.1 * (torch.rand(len(idx), 1, 1, 1, generator=gen) - 0.5) * 2
                shift = torch.randint(-2, 3, (2,), generator=gen).tolist()
                xb = torch.roll(xb * scale + offset, shifts=shift, dims=(2, 3))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb.to(device)), yb.to(device))
            loss.backward()
            opt.step()
    net.eval()
    return InjuryClassifier(cfg, net.cpu(), x.shape[1])


def evaluate_predictions(labels: list[str], y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int,
                         seed: int) -> dict[str, dict]:
    """Per-label :func:`~synthseq.downstream.stats.binary_report` of targets ``y`` and probabilities ``p`` ``(N, L)``."""
    return {lab: binary_report(y[:, j], p[:, j], threshold, n_boot, seed) for j, lab in enumerate(labels)}


def gradcam_maps(model: InjuryClassifier, x: np.ndarray) -> np.ndarray:
    """Grad-CAM (MONAI) maps ``(N, L, H, W)`` in [0, 1] for every label of inputs ``x`` ``(N, C, H, W)``."""
    import torch
    from monai.visualize import GradCAM

    net = model.net.cpu().eval()
    cam = GradCAM(nn_module=net, target_layers=gradcam_layer(model.cfg))
    xt = torch.from_numpy(x)
    maps = [cam(xt, class_idx=j).detach().numpy()[:, 0] for j in range(len(model.labels))]
    return np.stack(maps, axis=1)


def write_gradcam(model: InjuryClassifier, x: np.ndarray, subjects, probs: np.ndarray, out_dir: Path) -> list[Path]:
    """One PNG per subject: centre T2w slice plus a Grad-CAM overlay per label."""
    from .plots import gradcam_overlay

    if len(subjects) == 0:
        return []
    maps = gradcam_maps(model, x)
    centre = model.cfg.n_slices // 2  # the middle T2w channel
    paths = []
    for i, s in enumerate(subjects):
        cams = {lab: maps[i, j] for j, lab in enumerate(model.labels)}
        pr = {lab: float(probs[i, j]) for j, lab in enumerate(model.labels)}
        paths.append(gradcam_overlay(x[i, centre], cams, pr, f"{s} ({model.cfg.input})",
                                     out_dir / f"gradcam_{s}.png"))
    return paths


def _write_predictions(path: Path, subjects, labels, probs: np.ndarray, threshold: float, y=None) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        header = ["subject"] + [f"prob_{lab}" for lab in labels] + [f"pred_{lab}" for lab in labels]
        w.writerow(header + ([f"true_{lab}" for lab in labels] if y is not None else []))
        for i, s in enumerate(subjects):
            row = [s] + [f"{p:.6f}" for p in probs[i]] + [int(p >= threshold) for p in probs[i]]
            w.writerow(row + (list(map(int, y[i])) if y is not None else []))
    return path


def train_classifier(cfg: ClassifierConfig, synthesizer: Synth | None = None) -> dict:
    """Train on the training subjects of ``cfg.data``, evaluate on the held-out ones, write ``cfg.out_dir``.

    Writes ``model.ssmodel`` (loads alone), ``metrics.json`` (per-label AUC with 95% CI, sensitivity, specificity),
    ``predictions.csv`` (held-out subjects), ``config.yaml`` and ``gradcam_<subject>.png``.

    Args:
        synthesizer: optional ``Volume -> Volume`` pseudo-STIR synthesizer (overrides the checkpoint).
    Returns:
        The metrics dict (also in ``metrics.json``).
    """
    from ..config import save_config

    cfg.validate()
    out = Path(cfg.out_dir)
    cohort = read_cohort(cfg.data)
    cohort.require(cfg.labels)
    y = np.stack([cohort.flag(lab) for lab in cfg.labels], axis=1)
    parts = split_subjects(cohort.subjects, 0.0, cfg.test_fraction, cfg.split_seed, stratify=y)
    train, test = parts["train"], parts["test"]
    pseudo = None
    if cfg.input == "t2w+pseudostir":
        pseudo = PseudoStirSource.create(cfg.synthesis_checkpoint, cfg.pseudo_stir_dir, synthesizer,
                                         cache_dir=out / "pseudo_stir", device=cfg.device)
    index = {s: i for i, s in enumerate(cohort.subjects)}
    x_tr = load_inputs(cfg.data, train, cfg, pseudo)
    x_te = load_inputs(cfg.data, test, cfg, pseudo)
    y_tr = y[[index[s] for s in train]]
    y_te = y[[index[s] for s in test]]
    model = fit_network(cfg, x_tr, y_tr)
    p_te = model.predict(x_te)
    per_label = evaluate_predictions(cfg.labels, y_te, p_te, cfg.threshold, cfg.n_boot, cfg.seed)
    metrics = {"input": cfg.input, "n_train": len(train), "n_test": len(test), "test_subjects": test,
               "labels": per_label}
    model.metrics = metrics
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.ssmodel")
    save_config(cfg, out / "config.yaml")
    _write_predictions(out / "predictions.csv", test, cfg.labels, p_te, cfg.threshold, y_te)
    k = min(cfg.gradcam_subjects, len(test))
    write_gradcam(model, x_te[:k], test[:k], p_te[:k], out)
    atomic_write_text(out / "metrics.json", json.dumps(json_safe(metrics), indent=2))
    return metrics


def list_subjects(root: str | Path) -> list[str]:
    """Subjects of a folder: the cohort's when ``cohort.csv`` exists, else every ``sub-*`` folder with a T2w."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder")
    if (root / "cohort.csv").is_file():
        return read_cohort(root).subjects
    subjects = sorted(p.name for p in root.iterdir() if p.is_dir() and subject_file(root, p.name, "t2w",
                                                                                     required=False))
    if not subjects:
        raise InputError(f"{root}: no cohort.csv and no <subject>/<subject>_T2w.nii.gz found")
    return subjects


def predict_classifier(model_path: str | Path, data: str | Path, out: str | Path,
                       checkpoint: str | Path | None = None, synthesizer: Synth | None = None,
                       device: str = "auto") -> Path:
    """Probabilities for every subject of ``data`` -> CSV ``out`` (subject, prob_*, pred_*)."""
    from ..utils import resolve_device

    model = InjuryClassifier.load(model_path)
    cfg = model.cfg
    subjects = list_subjects(data)
    pseudo = None
    if cfg.input == "t2w+pseudostir":
        ckpt = checkpoint if checkpoint is not None else cfg.synthesis_checkpoint
        pseudo = PseudoStirSource.create(ckpt, cfg.pseudo_stir_dir if checkpoint is None else None, synthesizer,
                                         device=device)
    x = load_inputs(data, subjects, cfg, pseudo)
    probs = model.predict(x, device=str(resolve_device(device)))
    return _write_predictions(Path(out), subjects, cfg.labels, probs, cfg.threshold)
