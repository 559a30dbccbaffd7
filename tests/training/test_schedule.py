import pytest
import torch

from synthseq.errors import ConfigError
from synthseq.training.schedule import LRFactor, build_scheduler, load_scheduler_state, scheduler_state


def _lrs(kind, steps, decay_start=0.5, base=2e-4):
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = build_scheduler(opt, kind, steps, decay_start)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, opt, sched


def test_linear_is_constant_then_decays_to_zero():
    lrs, _, _ = _lrs("linear", 10, 0.5)
    assert lrs[:5] == [2e-4] * 5
    assert all(a > b for a, b in zip(lrs[5:], lrs[6:]))  # strictly decreasing after decay_start
    assert lrs[9] == pytest.approx(2e-4 * 0.2)
    assert LRFactor("linear", 10, 0.5)(10) == 0.0


def test_cosine_and_constant():
    cos, _, _ = _lrs("cosine", 8)
    assert cos[0] == pytest.approx(2e-4)
    assert cos[4] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(cos, cos[1:]))
    const, _, _ = _lrs("constant", 5)
    assert const == [2e-4] * 5


def test_unknown_schedule_names_the_key():
    with pytest.raises(ConfigError, match="train.schedule"):
        LRFactor("step", 10)


def test_resumed_schedule_follows_the_current_length():
    # 4 steps of a 10-step run, then continued as a 20-step run: the rate is the 20-step schedule's at step 4
    _, opt, sched = _lrs("linear", 4)
    state = scheduler_state(sched)
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched2 = build_scheduler(opt2, "linear", 20, 0.1)
    load_scheduler_state(sched2, state)
    assert sched2.last_epoch == 4
    assert opt2.param_groups[0]["lr"] == pytest.approx(2e-4 * LRFactor("linear", 20, 0.1)(4))
