"""Plain log lines off a terminal, and the one warning for a GPU-sized run on a CPU."""

from __future__ import annotations

import re

from synthseq.training.logging import cpu_time_warning, plain_line


def test_plain_line_has_step_losses_speed_and_eta():
    line = plain_line(100, 3000, {"G": 5.4712, "D": 0.56123}, 12.34, 0.2)
    assert line == "step 100/3000  G 5.471  D 0.5612  12.3 img/s  ETA 9m40s"
    assert plain_line(10, 20000, {"G": 1.0}, 1.0, 2.0).endswith("ETA 11h06m")


def test_cpu_warning_only_for_long_cpu_runs():
    assert cpu_time_warning(0.1, 3000, "cpu") is None  # 5 minutes: no warning
    assert cpu_time_warning(2.0, 20000, "cuda") is None
    msg = cpu_time_warning(2.0, 19999, "cpu")
    assert msg.startswith("synthseq: warning: training on the CPU: 19999 more steps at about 2.00 s/step is about "
                          "11h06m") and "sized for a GPU" in msg and "\n" not in msg


def test_a_run_off_a_terminal_prints_plain_lines(tiny_cfg, capsys):
    from synthseq.training import run

    run(tiny_cfg("pix2pix", "train.steps=4", "train.log_every=2"))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2/4", "4/4"]
    for ln in lines:
        assert re.fullmatch(r"step \d/4  G \S+  D \S+ .* \d+\.\d img/s  ETA \d+m\d\ds", ln), ln
    assert lines[-1].endswith("ETA 0m00s")
