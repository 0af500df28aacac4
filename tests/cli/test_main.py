"""Stderr is one line on every error path of the real ``mapguard`` process, and the code is 2.

Exit code 1 means "not evidenced" for ``verify``, so an error must never exit 1; torch log
records with tracebacks, FutureWarnings and PIL warnings must not reach stderr (issue 11).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A command that does what third-party code does on a bad day, then fails with a bug.
_NOISY_BUG = textwrap.dedent(
    """
    import logging, warnings
    import click
    from mapguard._cli import cli, main

    @cli.command("noisy-bug")
    def noisy_bug():
        import torch  # noqa: F401  (its log handlers are installed on import)
        from PIL import Image

        warnings.warn("a future change", FutureWarning)
        warnings.warn("large image", Image.DecompressionBombWarning)
        try:
            raise ValueError("bad archive")
        except ValueError:
            logging.getLogger("torch.export").warning("Ran into an error", exc_info=True)
        raise RuntimeError("boom: state is inconsistent\\nsecond line of detail")

    main()
    """
)


def _mapguard(*args: str, code: str | None = None, **env: str) -> subprocess.CompletedProcess:
    command = ["-c", code] if code else ["-m", "mapguard"]
    return subprocess.run(
        [sys.executable, *command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def _stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


def test_an_unexpected_exception_is_one_line_and_exit_2() -> None:
    proc = _mapguard("noisy-bug", code=_NOISY_BUG)
    assert proc.returncode == 2, proc.stderr
    assert _stderr_lines(proc) == [
        "mapguard: internal error: RuntimeError: boom: state is inconsistent "
        "(set MAPGUARD_DEBUG=1 for the traceback)"
    ]


def test_debug_mode_shows_the_traceback_and_the_noise_but_still_exits_2() -> None:
    proc = _mapguard("noisy-bug", code=_NOISY_BUG, MAPGUARD_DEBUG="1")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" in proc.stderr and "RuntimeError: boom" in proc.stderr
    assert "FutureWarning" in proc.stderr and "Ran into an error" in proc.stderr


def test_a_user_error_of_a_real_command_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 64)
    proc = _mapguard("evaluate", str(bad), "--data", "builtin:optdigits", "--quiet")
    assert proc.returncode == 2, proc.stderr
    (line,) = _stderr_lines(proc)
    assert line.startswith("mapguard: error:") and "bad.pt" in line


def test_a_usage_error_is_one_line_with_the_bad_value() -> None:
    args = ["train", "--data", "builtin:optdigits", "--epochs", "ten", "--out", "m.pt"]
    proc = _mapguard(*args)
    assert proc.returncode == 2, proc.stderr
    assert _stderr_lines(proc) == [
        "mapguard: error: Invalid value for '--epochs': 'ten' is not a valid integer. "
        "(see 'mapguard train --help')"
    ]


def test_mapguards_own_warning_is_one_line_per_warning(tmp_path: Path) -> None:
    """An unusable data cache is worth saying, once per file, in one line each."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = tmp_path / "m.pt"
    proc = _mapguard(
        "train", "--data", "builtin:optdigits", "--arch", "vgg_tiny", "--epochs", "1",
        "--out", str(out), "--quiet",
        MAPGUARD_CACHE_DIR=str(blocker / "cache"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = _stderr_lines(proc)
    assert lines and all(ln.startswith("mapguard: warning: could not cache data") for ln in lines)
    assert out.is_file()
