"""Outputs through the real CLI: checked before any work, never an input, no leftovers of a kill.

Found by probing (issue 11): an unwritable ``--out`` failed with a traceback after all the work;
``verify --watermark owner.wm --out owner.wm --force`` replaced the private watermark file;
``train --out newdir/`` wrote a file called ``newdir``; temporaries of a killed run stayed forever.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mapguard._cli import Command, cli
from protocols.fileio import STALE_AFTER_S

ROOT = Path(__file__).resolve().parents[2]


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [ln for ln in result.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("mapguard: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_every_command_checks_its_paths() -> None:
    """The checks live in the command class; a command made with another class would skip them."""
    for name, command in cli.commands.items():
        assert isinstance(command, Command), name


# ---- a path that names a folder where a file is expected ----------------------------------------
@pytest.mark.parametrize("command", ["train", "report"])
def test_file_output_with_a_trailing_separator_is_refused(command: str, tmp_path: Path) -> None:
    newdir = f"{tmp_path / 'newdir'}{os.sep}"
    args = {
        "train": ["train", "--data", "builtin:optdigits", "--out", newdir],
        "report": ["report", tmp_path / "r.json", "--commitment", tmp_path / "c", "--out", newdir],
    }[command]
    _one_line_error(run(*args), f"output '{newdir}' ends with a path separator", "--out")
    assert not (tmp_path / "newdir").exists()


# ---- an output the OS refuses, although os.access says yes --------------------------------------
@pytest.mark.skipif(
    not (os.path.isdir("/proc") and os.access("/proc", os.W_OK)),
    reason="needs /proc that os.access calls writable (Linux, as root)",
)
@pytest.mark.parametrize(
    "args",
    [
        ["train", "--data", "./no/such/data", "--out", "/proc/mapguard-m.pt"],
        ["verify", "no-suspect.pt", "--watermark", "no.wm", "--out", "/proc/mapguard-r.json"],
        ["synthesize", "no-model.pt", "--out", "/proc/mapguard-pseudo"],
    ],
    ids=["train", "verify", "synthesize"],
)
def test_unwritable_output_fails_before_any_input_is_read(args: list[str]) -> None:
    # The inputs do not exist either: the error names the output, so it came first.
    _one_line_error(
        run(*args), "cannot write '/proc/mapguard-", "directory '/proc' is not writable"
    )


def test_missing_output_directory_fails_before_verify_reads_anything(tmp_path: Path) -> None:
    out = tmp_path / "no" / "r.json"
    _one_line_error(
        run("verify", "no-suspect.pt", "--watermark", "no.wm", "--out", out),
        f"cannot write '{out}'",
        "does not exist",
    )


# ---- an output that is an input -----------------------------------------------------------------
def test_verify_cannot_overwrite_the_watermark_file(tmp_path: Path) -> None:
    wm = tmp_path / "owner.wm"
    wm.write_bytes(b"secret watermark")
    os.chmod(wm, 0o600)
    (tmp_path / "suspect.pt").write_bytes(b"x")
    result = run(
        "verify", tmp_path / "suspect.pt", "--watermark", wm, "--out", wm, "--force"
    )  # fmt: skip
    _one_line_error(result, f"output '{wm}' is also an input (--watermark)")
    assert wm.read_bytes() == b"secret watermark"
    assert stat.S_IMODE(wm.stat().st_mode) == 0o600


@pytest.mark.parametrize("command", ["report", "attack", "synthesize", "protect"])
def test_output_naming_an_input_is_refused(command: str, tmp_path: Path) -> None:
    for name in ("model.pt", "result.json", "commitment.json"):
        (tmp_path / name).write_bytes(b"input " + name.encode())
    (tmp_path / "via-link.pt").symlink_to(tmp_path / "model.pt")
    model, result = tmp_path / "model.pt", tmp_path / "result.json"
    args, needle = {
        "report": (
            ["report", result, "--commitment", tmp_path / "commitment.json", "--out", result],
            f"output '{result}' is also an input (RESULT)",
        ),
        "attack": (
            ["attack", model, "--kind", "prune", "--out", tmp_path / "via-link.pt"],
            "is also an input (MODEL)",
        ),
        "synthesize": (
            ["synthesize", model, "--out", tmp_path],
            f"output folder '{tmp_path}' contains input '{model}' (MODEL)",
        ),
        "protect": (
            ["protect", model, "--source", "builtin:mnist", "--out", tmp_path / "p.pt",
             "--mask-out", tmp_path / "p.pt"],
            "outputs --out and --mask-out both name",
        ),
    }[command]  # fmt: skip
    _one_line_error(run(*args, "--force"), needle)
    for name in ("model.pt", "result.json", "commitment.json"):
        assert (tmp_path / name).read_bytes() == b"input " + name.encode()


# ---- temporaries of a killed run ----------------------------------------------------------------
def _killed_while_writing(code: str, cwd: Path) -> None:
    """Run ``code`` in a child that SIGKILLs itself inside the atomic write, like a killed run."""
    body = textwrap.indent(textwrap.dedent(code), "    ")
    script = f"import os, signal\ndef main():\n{body}\nmain()\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, timeout=120)
    assert proc.returncode == -signal.SIGKILL


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_the_next_write_removes_a_killed_runs_temporary_file(tmp_path: Path) -> None:
    _killed_while_writing(
        """
        from protocols.fileio import atomic_path
        with atomic_path("owner.key") as tmp:
            tmp.write_bytes(b"half a key")
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path,
    )
    (stale,) = tmp_path.glob(".owner.key.*.tmp")
    young = tmp_path / ".owner.key.999999999.abcdefgh.tmp"  # gone pid, but written just now
    young.write_bytes(b"")
    _age(stale, STALE_AFTER_S + 60)
    r = run("keygen", "--out", tmp_path / "owner")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and young.exists()
    assert (tmp_path / "owner.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_the_next_write_removes_a_killed_runs_staging_folder(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    _killed_while_writing(
        """
        from pathlib import Path
        from protocols.fileio import atomic_dir
        with atomic_dir(Path("pseudo"), force=False) as tmp:
            (tmp / "half.npz").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path,
    )
    (stale,) = tmp_path.glob(".pseudo.*.tmp")
    assert (stale / "half.npz").exists()
    _age(stale, STALE_AFTER_S + 60)
    out = tmp_path / "pseudo"
    r = run("synthesize", tiny_checkpoint, "--n", "10", "--steps", "2", "--out", out, "-q")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and (out / "pseudo_source.npz").is_file()
    assert not list(tmp_path.glob(".pseudo.*"))
