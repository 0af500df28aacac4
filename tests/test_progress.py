"""progress_bar: periodic status lines when stderr is not a terminal (logs, batch jobs)."""

from __future__ import annotations

import re

import pytest

from mapguard._errors import ConfigError
from mapguard._progress import INTERVAL_ENV, _Bar, _duration, progress_bar

STATUS = re.compile(
    r"^\[\.\.\] phase: step (\d+)/4 \((\d+)%\), loss 0\.2500, [\d.]+ images/s, "
    r"elapsed \d+s, ETA \d+s$"
)


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_every_interval_prints_step_loss_rate_and_eta(capsys):
    with progress_bar("phase", total=4, interval=0) as bar:
        for _ in range(4):
            bar.advance(images=8, loss=0.25)
    out = lines(capsys)
    assert out[0] == "[..] phase (4 steps)"
    steps = [STATUS.match(line) for line in out[1:5]]
    assert all(steps), out
    assert [(int(m[1]), int(m[2])) for m in steps] == [(1, 25), (2, 50), (3, 75), (4, 100)]
    assert re.fullmatch(r"\[ok\] phase: 4 steps in \d+s, [\d.]+ images/s", out[5]), out
    assert len(out) == 6


def test_a_short_phase_stays_one_line(capsys, monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)  # default 30 s
    with progress_bar("quick", total=None) as bar:
        bar.advance(3)
    assert lines(capsys) == ["[..] quick"]
    with progress_bar("off", total=3, enabled=False, interval=0) as bar:
        bar.advance()
    assert lines(capsys) == []


def test_interval_comes_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    with progress_bar("env", total=2) as bar:
        bar.advance()
    assert lines(capsys)[1].startswith("[..] env: step 1/2 (50%), elapsed ")
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(ConfigError, match="MAPGUARD_PROGRESS_INTERVAL='soon'"):
        with progress_bar("env", total=2):
            pass
    with pytest.raises(ConfigError, match="-1"):
        with progress_bar("env", total=2, interval=-1):
            pass


def test_rate_and_eta_follow_the_clock(capsys):
    now = [100.0]
    bar = _Bar("phase", 4, interval=30, clock=lambda: now[0])
    now[0] = 130.0
    bar.advance(images=600, loss=1.0)
    now[0] = 140.0
    bar.advance(images=200)  # under 30 s since the last line: no line
    assert lines(capsys) == ["[..] phase: step 1/4 (25%), loss 1.0000, 20.0 images/s, "
                             "elapsed 30s, ETA 1m30s"]  # fmt: skip
    assert bar.status().endswith("elapsed 40s, ETA 40s")
    assert [_duration(s) for s in (0.4, 59, 61, 3600 + 180)] == ["0s", "59s", "1m01s", "1h03m"]
