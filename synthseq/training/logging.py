"""What a run reports: TensorBoard scalars / image grids / config text, and JSON-lines logs in the run folder.

Only rank 0 creates a :class:`RunLogger`; other ranks get one with ``enabled=False`` whose methods do nothing.

Off a terminal (stderr not a TTY: nohup, SLURM, CI), where no progress bar is shown, rank 0 prints one plain line
per ``train.log_every`` steps on stderr (:func:`plain_line`: step, losses, images/s, ETA), and a run on the CPU
whose first step predicts more than :data:`CPU_WARN_HOURS` hours warns once (a GPU-sized config on a CPU).

Image grids use a FIXED display window so that brightness is comparable across steps and runs: images in model
space [-1, 1] map linearly to [0, 1] (clipped), and the absolute difference |pseudo-STIR - STIR| in [0, 2] maps to
[0, 1]. No per-image min/max stretching, which would hide a generator that is uniformly too dark or too bright.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..utils import atomic_write_text


def display_grid(a: Tensor, fake: Tensor, real: Tensor, max_rows: int = 4) -> Tensor:
    """Rows of ``T2w | pseudo-STIR | STIR | |difference|`` as one ``(1, H*rows, W*4)`` image in [0, 1].

    Args:
        a: ``(B, C_in, H, W)`` input in [-1, 1]; the middle channel is shown (the centre slice of a 2.5D stack,
            or the middle sequence of a multi-input stack).
        fake, real: ``(B, 1, H, W)`` in [-1, 1].
    """
    n = min(max_rows, a.shape[0])
    a = a[:n, a.shape[1] // 2 : a.shape[1] // 2 + 1].float()
    fake, real = fake[:n].float(), real[:n].float()
    window = lambda x: ((x + 1.0) / 2.0).clamp(0.0, 1.0)  # noqa: E731  [-1, 1] -> [0, 1]
    diff = ((fake - real).abs() / 2.0).clamp(0.0, 1.0)  # [0, 2] -> [0, 1]
    row = torch.cat([window(a), window(fake), window(real), diff], dim=3)  # (n, 1, H, 4W)
    return torch.cat(list(row), dim=1).detach().cpu()  # (1, n*H, 4W)


#: A CPU run whose first step predicts more than this many hours gets one warning.
CPU_WARN_HOURS = 1.0


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def plain_line(step: int, total: int, losses: dict[str, float], images_per_s: float, seconds_per_step: float) -> str:
    """``step 100/3000  G 5.47  D 0.561  G_l1 0.0392  12.3 img/s  ETA 9m41s``: one log line for files."""
    terms = "  ".join(f"{k} {v:.4g}" for k, v in losses.items())
    eta = _duration((total - step) * seconds_per_step)
    return f"step {step}/{total}  {terms}  {images_per_s:.1f} img/s  ETA {eta}"


def cpu_time_warning(seconds_per_step: float, steps_left: int, device_type: str) -> str | None:
    """The one warning for a CPU run expected to take more than :data:`CPU_WARN_HOURS` (None otherwise)."""
    total = seconds_per_step * steps_left
    if device_type != "cpu" or total <= CPU_WARN_HOURS * 3600:
        return None
    return (f"synthseq: warning: training on the CPU: {steps_left} more steps at about {seconds_per_step:.2f} s/step "
            f"is about {_duration(total)}; this config is sized for a GPU (configs/*_cpu_tiny.yaml are sized for "
            f"CPUs)")


class JsonLines:
    """An append-only JSON-lines file, rewritten atomically at every append (small logs only)."""

    def __init__(self, path: str | Path, keep_until_step: int | None = None) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if self.path.is_file() and keep_until_step is not None:
            # resuming: keep what the checkpointed part of the run logged, drop what came after it
            for line in self.path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec.get("step", 0) <= keep_until_step:
                        self.records.append(rec)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


class RunLogger:
    """TensorBoard writer (``OUT/tb``) plus ``train_log.jsonl`` (loss averages) and ``metrics.jsonl``
    (validation results) in the run folder."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, start_step: int = 0, total_steps: int | None = None,
                 plain: bool | None = None) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.writer = None
        self.total_steps = total_steps
        #: plain lines on stderr: by default when stderr is not a terminal (no progress bar there)
        self.plain = enabled and (not sys.stderr.isatty() if plain is None else plain)
        self._warned = False
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        resumed = start_step > 0
        # purge_step hides events a crashed run wrote after the checkpoint we resume from
        self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_step if resumed else None)
        self.train_log = JsonLines(self.out_dir / "train_log.jsonl", keep_until_step=start_step if resumed else -1)
        self.val_log = JsonLines(self.out_dir / "metrics.jsonl", keep_until_step=start_step if resumed else -1)

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}{key}", value, step)

    def first_step(self, seconds: float, steps_left: int, device_type: str) -> None:
        """After the first step: warn once when a CPU run is expected to take hours."""
        if not self.enabled or self._warned:
            return
        self._warned = True
        warning = cpu_time_warning(seconds, steps_left, device_type)
        if warning:
            print(warning, file=sys.stderr, flush=True)

    def train(self, step: int, losses: dict[str, float], lr: float, images_per_s: float,
              seconds_per_step: float | None = None) -> None:
        if self.plain and self.total_steps and seconds_per_step is not None:
            print(plain_line(step, self.total_steps, losses, images_per_s, seconds_per_step), file=sys.stderr,
                  flush=True)
        if self.writer is None:
            return
        self.scalars(losses, step, "loss/")
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/images_per_s", images_per_s, step)
        self.train_log.append({"step": step, **losses, "lr": lr, "images_per_s": images_per_s})

    def validation(self, step: int, metrics: dict[str, float], best: bool) -> None:
        if self.writer is None:
            return
        self.scalars(metrics, step, "val/")
        self.val_log.append({"step": step, **metrics, "best": best})

    def images(self, tag: str, grid: Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, grid, step, dataformats="CHW")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            # four leading spaces: TensorBoard renders the text as markdown, so show YAML as a code block
            self.writer.add_text(tag, "\n".join("    " + line for line in text.splitlines()), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
