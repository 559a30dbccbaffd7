"""Learning-rate schedules as multiplicative factors of the base rate, one value per optimizer step.

``linear`` is the classic pix2pix/CycleGAN schedule: the base rate for the first ``decay_start * steps`` steps,
then a straight line down to 0 at ``steps``. ``cosine`` is half a cosine from 1 to 0 over ``steps``;
``constant`` never changes.

>>> f = LRFactor("linear", steps=10, decay_start=0.5)
>>> [round(f(s), 2) for s in (0, 4, 5, 6, 9, 10)]
[1.0, 1.0, 1.0, 0.8, 0.2, 0.0]
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..errors import ConfigError

SCHEDULES = ("linear", "cosine", "constant")


class LRFactor:
    """``step -> factor`` in [0, 1] (a picklable callable, so ``LambdaLR`` can save it)."""

    def __init__(self, kind: str, steps: int, decay_start: float = 0.5) -> None:
        if kind not in SCHEDULES:
            raise ConfigError(f"train.schedule: unknown schedule {kind!r} (use one of {', '.join(SCHEDULES)})")
        if not 0.0 <= decay_start <= 1.0:
            raise ConfigError(f"train.decay_start: expected a fraction in [0, 1], got {decay_start}")
        self.kind = kind
        self.steps = max(int(steps), 1)
        self.decay_start = float(decay_start)

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / self.steps))
        start = int(self.decay_start * self.steps)
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(self.steps - start, 1))


def build_scheduler(optimizer: Optimizer, kind: str, steps: int, decay_start: float = 0.5) -> LambdaLR:
    """A ``LambdaLR`` over ``optimizer`` stepped once per optimizer step."""
    return LambdaLR(optimizer, LRFactor(kind, steps, decay_start))


def scheduler_state(scheduler: LambdaLR) -> dict:
    """The scheduler's position (without the schedule's shape, which the current config defines)."""
    state = scheduler.state_dict()
    state.pop("lr_lambdas", None)
    return state


def load_scheduler_state(scheduler: LambdaLR, state: dict) -> None:
    """Restore the position saved by :func:`scheduler_state`; the schedule's shape comes from the current config,
    so a resumed run may extend ``train.steps`` (the decay is then recomputed for the new length)."""
    state = dict(state)
    state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
    scheduler.load_state_dict(state)
    # the optimizer's stored rate came from the saved schedule: recompute it from the current one
    step = scheduler.last_epoch
    for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * fn(step)
    scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]
