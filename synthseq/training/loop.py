"""The training loop: one optimizer step = ``grad_accum`` micro-batches of a generator step and a discriminator
step, then Adam on both groups and a scheduler step.

Per micro-batch (classic pix2pix / CycleGAN order, one generator forward per step):

1. generator step: discriminators frozen (``set_discriminators_trainable(False)``) and their DDP wrappers in
   ``no_sync()``; ``generator_loss(batch)`` -> backward (the generators' DDP wrappers synchronise only on the last
   micro-batch);
2. discriminator step: discriminators trainable again; ``discriminator_loss(batch, fakes)`` -> backward (the fakes
   are detached inside the model).

Both optimizers step together after the last micro-batch, so the generator's gradient is taken against the same
discriminator the discriminator step starts from. Exactness of resume rests on three things: every random draw of the
data stream is a function of ``(seed, rank, step, micro)`` (see :mod:`.data`), all global generators are saved per
rank, and nothing else in the loop draws random numbers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import ModelSpec
from ..config import Config, dump_config, save_config, to_dict
from ..data.preprocess import Preprocessor
from ..errors import ConfigError
from ..utils import directory_lock, progress, seed_everything
from . import distributed as ddp
from .batchnorm import recalibrate_batchnorm
from .checkpoint import (
    capture_rng,
    get_extra_state,
    in_channels_of,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    set_extra_state,
    to_cpu,
)
from .data import RunData, build_run_data
from .logging import RunLogger, display_grid
from .model_card import write_model_card
from .schedule import build_scheduler, load_scheduler_state, scheduler_state
from .validation import pad_multiple_of, predict, validate

BEST_METRIC = "ssim"  # higher is better; structural agreement is what the synthesis must get right
#: Checkpoint entries only resuming needs: kept in last.pt, left out of best.pt.
RESUME_ONLY = ("optimizers", "schedulers", "scaler", "rng", "extra")


def init_weights_from(model: nn.Module, path: str | Path, ckpt: dict[str, Any] | None = None) -> None:
    """Fine-tuning: copy the network weights of checkpoint ``path`` (already read: ``ckpt``) into ``model`` (the
    optimizer, schedule and step start afresh). Every parameter must exist with the same shape; ConfigError names
    the first mismatch."""
    ckpt = ckpt if ckpt is not None else load_checkpoint(path, map_location="cpu")
    theirs, ours = ckpt["model"], model.state_dict()
    bad = [f"{k} has shape {tuple(v.shape)} in the checkpoint, {tuple(ours[k].shape)} here"
           for k, v in theirs.items() if k in ours and hasattr(v, "shape") and tuple(v.shape) != tuple(ours[k].shape)]
    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    if bad or missing or extra:
        first = bad[0] if bad else (f"{missing[0]} is missing from the checkpoint" if missing
                                    else f"{extra[0]} is not in this model")
        n = len(bad) + len(missing) + len(extra)
        raise ConfigError(f"train.init_from={path}: weights do not fit the configured model: {first}"
                          + (f" (and {n - 1} more)" if n > 1 else "") + "; use the same model section")
    model.load_state_dict(theirs)


def _amp_dtype(name: str) -> torch.dtype:
    dtypes = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ConfigError(f"train.amp_dtype: expected bfloat16 or float16, got {name!r}")
    return dtypes[name]


class Trainer:
    """Holds one process's model, optimizers, schedulers and data for a run (see the module docstring)."""

    def __init__(self, cfg: Config, model: nn.Module, data: RunData, device: torch.device, info: ddp.DistInfo,
                 run_dir: Path) -> None:
        t = cfg.train
        if t.grad_accum < 1:
            raise ConfigError(f"train.grad_accum: expected >= 1, got {t.grad_accum}")
        if t.steps < 1:
            raise ConfigError(f"train.steps: expected >= 1, got {t.steps}")
        self.cfg, self.data, self.device, self.info, self.run_dir = cfg, data, device, info, run_dir
        self.cuda = device.type == "cuda"
        self.amp_dtype = _amp_dtype(t.amp_dtype)
        self.amp = bool(t.amp and self.cuda)
        self.channels_last = bool(t.channels_last and self.cuda)
        self.step = 0
        self.lr = t.lr
        self.best: dict[str, Any] = {"metric": BEST_METRIC, "value": None, "step": None}

        self.model = model.to(device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.g_names, self.d_names = list(model.generator_modules()), list(model.discriminator_modules())
        self.raw = {n: getattr(model, n) for n in self.g_names + self.d_names}  # unwrapped networks

        # fused Adam: one kernel per parameter group on CUDA
        fused = {"fused": True} if self.cuda else {}
        adam = dict(lr=t.lr, betas=(t.beta1, t.beta2), **fused)
        self.opt = {"G": torch.optim.Adam(model.generator_parameters(), **adam),
                    "D": torch.optim.Adam(model.discriminator_parameters(), **adam)}
        self.sched = {k: build_scheduler(o, t.schedule, t.steps, t.decay_start) for k, o in self.opt.items()}
        # bf16 has fp32's exponent range: no loss scaling. fp16 needs it; the scaler is kept (disabled) either way
        # so checkpoints have the same layout.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

        if info.enabled:
            ddp.wrap_modules(model, self.g_names + self.d_names, device)
        if t.compile:
            for n in self.g_names + self.d_names:
                setattr(model, n, torch.compile(getattr(model, n)))

    # ------------------------------------------------------------------------------------------- helpers
    @classmethod
    def from_config(cls, cfg: Config, device: torch.device, info: ddp.DistInfo, run_dir: Path,
                    resume: bool = False) -> Trainer:
        """Build the GAN (identical initial weights on every rank), per-rank random streams and the run's data."""
        from ..models import build_gan

        seed_everything(cfg.train.seed)
        model = build_gan(cfg.model, cfg.loss, in_channels_of(to_dict(cfg)))
        seed_everything(cfg.train.seed + info.rank)  # per-rank streams from here on
        if hasattr(model, "seed_pools"):  # CycleGAN: each rank's image pools draw their own choices
            model.seed_pools(cfg.train.seed + 2 * info.rank)
        data = build_run_data(cfg, device, info, run_dir, resume=resume)
        return cls(cfg, model, data, device, info, run_dir)

    @contextlib.contextmanager
    def unwrapped(self) -> Iterator[nn.Module]:
        """The model with its plain networks (no DDP / compile wrappers) for saving and validation."""
        wrapped = {n: getattr(self.model, n) for n in self.raw}
        for n, net in self.raw.items():
            setattr(self.model, n, net)
        try:
            yield self.model
        finally:
            for n, net in wrapped.items():
                setattr(self.model, n, net)

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for k, v in batch.items():
            v = v.to(self.device, non_blocking=True)
            if self.channels_last and v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    # ---------------------------------------------------------------------------------------------- step
    def train_step(self) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """One optimizer step; returns the summed loss terms (detached, on device), the last batch and fakes."""
        accum = self.cfg.train.grad_accum
        model = self.model
        g_nets = [getattr(model, n) for n in self.g_names]
        d_nets = [getattr(model, n) for n in self.d_names]
        model.train()
        sums: dict[str, Tensor] = {}
        batch: dict[str, Tensor] = {}
        fakes: dict[str, Tensor] = {}
        for micro in range(accum):
            last = micro == accum - 1
            batch = self.to_device(self.data.train.batch(self.step, micro))
            model.set_discriminators_trainable(False)
            with ddp.no_sync(d_nets), ddp.no_sync(g_nets, active=not last):
                with self.autocast():
                    g_loss, g_terms, fakes = model.generator_loss(batch)
                self.scaler.scale(g_loss / accum).backward()
            model.set_discriminators_trainable(True)
            with ddp.no_sync(d_nets, active=not last):
                with self.autocast():
                    d_loss, d_terms = model.discriminator_loss(batch, fakes)
                self.scaler.scale(d_loss / accum).backward()
            terms = {"G": g_loss.detach(), "D": d_loss.detach(), **g_terms, **d_terms}
            for k, v in terms.items():
                v = v.detach().float() / accum
                sums[k] = sums[k] + v if k in sums else v
        for opt in self.opt.values():
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.opt.values():
            opt.zero_grad(set_to_none=True)
        self.lr = self.opt["G"].param_groups[0]["lr"]  # the rate this step used (logged)
        for sched in self.sched.values():
            sched.step()
        self.step += 1
        return sums, batch, fakes

    # ----------------------------------------------------------------------------------------- checkpoint
    def state(self, rng_per_rank: list[Any], extra_per_rank: list[Any]) -> dict[str, Any]:
        cfg = self.cfg
        with self.unwrapped() as model:
            weights = to_cpu(model.state_dict())
        spec = ModelSpec(
            kind=getattr(self.model, "kind", cfg.model.kind), config=to_dict(cfg),
            preprocessing=Preprocessor.from_config(cfg.data), pixel_spacing_mm=self.data.pixel_spacing_mm,
            image_size=cfg.data.image_size, context_slices=cfg.data.context_slices,
            input_keys=list(cfg.data.input_keys), slice_plane=self.data.slice_plane,
            splits={k: list(v) for k, v in self.data.splits.items()},
        )
        return {
            **spec.entries(),
            "model": weights,
            "optimizers": {k: o.state_dict() for k, o in self.opt.items()},
            "schedulers": {k: scheduler_state(s) for k, s in self.sched.items()},
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": {"world_size": self.info.world_size, "per_rank": rng_per_rank},
            "extra": {"world_size": self.info.world_size, "per_rank": extra_per_rank},
            "best": dict(self.best),
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        with self.unwrapped() as model:
            model.load_state_dict(ckpt["model"])
        for k, o in self.opt.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.sched.items():
            load_scheduler_state(s, ckpt["schedulers"][k])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.best = dict(ckpt.get("best") or self.best)
        rng, extra = ckpt["rng"], ckpt.get("extra") or {}
        if rng.get("world_size") == self.info.world_size:
            restore_rng(rng["per_rank"][self.info.rank])
            if extra.get("per_rank"):  # each rank's own image pools (load_state_dict gave it rank 0's)
                set_extra_state(self.model, extra["per_rank"][self.info.rank])
        else:  # a different number of processes cannot replay the old streams: continue deterministically
            seed_everything(self.cfg.train.seed + self.info.rank + 1_000_003 * self.step)

    def _collect(self) -> tuple[list[Any], list[Any]]:
        """Every rank's RNG and model-extra states (a collective: all ranks call it)."""
        extra = get_extra_state(self.model)
        return ddp.gather_objects(capture_rng(), self.info), ddp.gather_objects(extra, self.info)


def _check_resume_compatible(ckpt: dict[str, Any], cfg: Config, path: Path) -> None:
    saved = ckpt["config"]
    now = to_dict(cfg)
    if saved.get("model") != now["model"]:
        raise ConfigError(f"{path}: the checkpoint's model section differs from the config's (resume needs the same model)")
    for key in ("input_keys", "context_slices", "image_size", "norm", "norm_percentiles"):
        if saved.get("data", {}).get(key) != now["data"][key]:
            raise ConfigError(f"{path}: data.{key} differs from the checkpoint's ({saved['data'].get(key)!r})")


def run(cfg: Config) -> Path:
    """Train ``cfg`` (fresh, or from ``OUT/last.pt`` when ``train.resume``) and return the run directory.

    Every config value is checked before anything is written; the run directory is locked while the run writes
    into it, so a second run into the same ``train.out_dir`` fails at once (InputError naming the folder).
    """
    cfg.validate()
    info, device = ddp.setup(cfg.train.device)
    if device.type == "cpu" and cfg.train.cpu_threads > 0:
        # on shared cores, OpenMP threads spin-waiting for each other can make small convolutions 10x+ slower
        torch.set_num_threads(cfg.train.cpu_threads)
    try:
        lock = directory_lock(cfg.train.out_dir, "training") if info.is_main else contextlib.nullcontext()
        with lock:
            return _run(cfg, info, device)
    finally:
        ddp.cleanup(info)


def _run(cfg: Config, info: ddp.DistInfo, device: torch.device) -> Path:
    from ..synthesis import synthesis_config_problem  # lazy: synthesis imports the training checkpoint code

    problem = synthesis_config_problem(cfg)
    if problem is not None:  # refuse a run whose model `synthesize` could not use, before any work
        raise ConfigError(problem)
    t = cfg.train
    run_dir = Path(t.out_dir)
    last = run_dir / "last.pt"
    if t.resume and not last.is_file():
        raise ConfigError(f"train.resume=true but {last} does not exist (start without resume)")
    if not t.resume and last.is_file():
        raise ConfigError(f"{last} exists: pass train.resume=true to continue that run, or choose another train.out_dir")
    ckpt = load_checkpoint(last, map_location="cpu") if t.resume else None
    if ckpt is not None:
        _check_resume_compatible(ckpt, cfg, last)
    # fine-tuning: read the init checkpoint before anything is written (a bad path leaves no run folder)
    init = load_checkpoint(t.init_from, map_location="cpu") if t.init_from and ckpt is None else None
    ddp.barrier(info)  # no rank may see rank 0's files of this run before deciding the above

    trainer = Trainer.from_config(cfg, device, info, run_dir, resume=ckpt is not None)
    if ckpt is not None:
        trainer.load_state(ckpt)
        del ckpt
    elif init is not None:
        with trainer.unwrapped() as model:
            init_weights_from(model, t.init_from, init)
        del init
    start = trainer.step
    if info.is_main:
        save_config(cfg, run_dir / "config.yaml")
    logger = RunLogger(run_dir, enabled=info.is_main, start_step=start, total_steps=t.steps)
    logger.text("config", dump_config(cfg), start)
    try:
        _loop(trainer, logger, start)
    finally:
        logger.close()
    return run_dir


def _loop(trainer: Trainer, logger: RunLogger, start: int) -> None:
    cfg, info = trainer.cfg, trainer.info
    t = cfg.train
    per_step = t.batch_size * t.grad_accum * info.world_size  # images per optimizer step, all ranks
    bar = progress(range(start, t.steps), desc=f"train {cfg.model.kind}", total=t.steps, initial=start,
                   disable=None if info.is_main else True, unit="step")
    window: dict[str, Tensor] = {}
    n_window, t0 = 0, time.perf_counter()
    for _ in bar:
        sums, batch, fakes = trainer.train_step()
        step = trainer.step
        if step == start + 1:  # a CPU run sized for a GPU: say how long it will take, once
            logger.first_step(time.perf_counter() - t0, t.steps - step, trainer.device.type)
        for k, v in sums.items():
            window[k] = window[k] + v if k in window else v
        n_window += 1

        if step % t.log_every == 0 or step == t.steps:
            if trainer.cuda:
                torch.cuda.synchronize(trainer.device)
            elapsed = time.perf_counter() - t0
            ips = per_step * n_window / max(elapsed, 1e-9)
            losses = {k: float(v) / n_window for k, v in window.items()}
            logger.train(step, losses, trainer.lr, ips, seconds_per_step=elapsed / n_window)
            bar.set_postfix(G=f"{losses['G']:.3f}", D=f"{losses['D']:.3f}", img_s=f"{ips:.0f}")
            window, n_window, t0 = {}, 0, time.perf_counter()

        if info.is_main and t.image_every > 0 and step % t.image_every == 0 and "fake_B" in fakes:
            logger.images("train/T2w|pseudoSTIR|STIR|diff", display_grid(batch["A"], fakes["fake_B"], batch["B"]), step)

        do_val = (t.val_every > 0 and step % t.val_every == 0) or step == t.steps
        do_ckpt = (t.ckpt_every > 0 and step % t.ckpt_every == 0) or step == t.steps
        improved = False
        if (do_val or do_ckpt) and info.is_main and trainer.data.calibration:
            _recalibrate(trainer, logger, step)
        if do_val and info.is_main and trainer.data.val:
            improved = _validate(trainer, logger, step)
        if do_val or do_ckpt:
            # collectives: every rank takes part, rank 0 writes
            rng_all, extra_all = trainer._collect()
            if info.is_main and (do_ckpt or improved or (step == t.steps and not trainer.data.val)):
                state = trainer.state(rng_all, extra_all)
                if improved or (step == t.steps and not trainer.data.val):
                    # best.pt is for synthesis (weights, config, preprocessing); resuming needs last.pt
                    best_state = {k: v for k, v in state.items() if k not in RESUME_ONLY}
                    # MODEL_CARD.md beside best.pt, and the same text inside it (synthseq info best.pt)
                    best_state["model_card"] = write_model_card(best_state, trainer.run_dir,
                                                                getattr(trainer, "best_metrics", None))
                    save_checkpoint(best_state, trainer.run_dir / "best.pt")
                if do_ckpt:
                    save_checkpoint(state, trainer.run_dir / "last.pt")
            logger.flush()
        # measured throughput excludes validation and checkpoint writing
        if do_val or do_ckpt:
            t0 = time.perf_counter()
    bar.close()


def _recalibrate(trainer: Trainer, logger: RunLogger, step: int) -> None:
    """Rank 0: the generator's batch-norm statistics re-estimated on whole training slices (``batchnorm``), so
    validation and the checkpoints use what synthesis will see; logged as ``bn/slices``."""
    with trainer.unwrapped() as model:
        seen = recalibrate_batchnorm(model, trainer.data.calibration, trainer.device, trainer.autocast,
                                     pad_multiple_of(model))
    logger.scalars({"slices": float(seen)}, step, "bn/")


def _validate(trainer: Trainer, logger: RunLogger, step: int) -> bool:
    """Validate on rank 0 with the plain networks; True when the best metric improved."""
    cfg = trainer.cfg
    with trainer.unwrapped() as model:
        multiple = pad_multiple_of(model)
        metrics = validate(model, trainer.data.val, trainer.device, trainer.autocast, multiple)
        if trainer.data.preview is not None and cfg.train.image_every > 0:
            a, b = trainer.data.preview["A"], trainer.data.preview["B"]
            fake = predict(model, a, trainer.device, trainer.autocast, multiple)
            logger.images("val/T2w|pseudoSTIR|STIR|diff", display_grid(a, fake, b), step)
    value = metrics[BEST_METRIC]
    best = trainer.best["value"]
    if cfg.train.best_checkpoint == "final":
        improved = step == cfg.train.steps
    else:
        improved = best is None or value > best
    if improved:
        trainer.best = {"metric": BEST_METRIC, "value": value, "step": step, "rule": cfg.train.best_checkpoint}
        trainer.best_metrics = dict(metrics)  # all validation metrics of the best step, for the model card
    logger.validation(step, metrics, improved)
    return improved
