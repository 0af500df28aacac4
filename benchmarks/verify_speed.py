"""Verify speed: ``mapguard verify`` on a local file against ``import torch, torchvision``.

Issue 16's target: the wall time of ``mapguard verify protected.pt --watermark owner.wm`` (the
committed analysis, CPU, a fresh process) at most 3x the wall time of ``python -c "import torch,
torchvision"``, both measured in the same run, alternately, ``--repeats`` times (the medians are
compared). The embedding is a small zoo model's (vgg_small on builtin:mnist, the default recipe):
the false-positive benchmark's cached one when it is there, otherwise one made here once and
cached in the user cache dir (``bench-verify-speed/``).

Run: ``python -m benchmarks.verify_speed [--repeats 3] [--embedding DIR] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import platformdirs

CACHE = Path(platformdirs.user_cache_dir("mapguard"))
NONCE = "verify-speed benchmark"


def _python(args: list[str], threads: int) -> tuple[float, int]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, check=False)
    return time.perf_counter() - t0, proc.returncode


def _cached_embedding() -> Path | None:
    """A default-recipe vgg_small embedding from the false-positive benchmark's cache."""
    root = CACHE / "bench-false-positives" / "wm"
    found = sorted(p.parent for p in root.glob("vgg_small-mnist-*/owner.wm"))
    return found[0] if found else None


def _make_embedding() -> Path:
    """Train vgg_small on builtin:mnist (4 epochs) and embed the default recipe, once."""
    from mapguard.training import train_source
    from mapguard.watermark import EmbedConfig, embed
    from protocols import keys

    root = CACHE / "bench-verify-speed"
    out = root / "wm"
    if (out / "owner.wm").exists():
        return out
    root.mkdir(parents=True, exist_ok=True)
    model = root / "vgg_small-mnist-e4.pt"
    if not model.exists():
        train_source("builtin:mnist", arch="vgg_small", out=model, epochs=4, seed=0,
                     progress=False)  # fmt: skip
    key = root / "owner.key"
    if not key.exists():
        keys.generate_keypair(root / "owner")
    embed(model, "builtin:mnist", keys.load_private_key(key), EmbedConfig(), out=out,
          progress=False, force=True)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embedding", type=Path, default=None, help="folder with protected.pt")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of both commands")
    args = ap.parse_args(argv)
    wm = args.embedding or _cached_embedding() or _make_embedding()
    out = Path(platformdirs.user_cache_dir("mapguard")) / "bench-verify-speed" / "result.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    verify = ["-m", "mapguard", "verify", str(wm / "protected.pt"), "--watermark",
              str(wm / "owner.wm"), "--claim-nonce", NONCE, "--out", str(out),
              "--force"]  # fmt: skip
    imports, verifies, codes = [], [], set()
    for _ in range(args.repeats):
        imports.append(_python(["-c", "import torch, torchvision"], args.threads)[0])
        seconds, rc = _python(verify, args.threads)
        verifies.append(seconds)
        codes.add(rc)
    imp, ver = statistics.median(imports), statistics.median(verifies)
    verdict = ", ".join({0: "evidenced", 1: "not evidenced"}.get(c, f"error {c}") for c in codes)
    print(f"embedding: {wm}")
    print("| command | runs (s) | median s |")
    print("|---|---|---|")
    print(f"| `python -c \"import torch, torchvision\"` | "
          f"{', '.join(f'{s:.1f}' for s in imports)} | {imp:.1f} |")  # fmt: skip
    print(f"| `mapguard verify protected.pt` ({verdict}) | "
          f"{', '.join(f'{s:.1f}' for s in verifies)} | {ver:.1f} |")  # fmt: skip
    print(f"\nratio verify / import: {ver / imp:.2f} (target <= 3)")


if __name__ == "__main__":
    main()
