"""Peak memory of ``protect`` and ``embed`` on folder data does not grow with the number of
images (issue 14 item 4): MAP (one full epoch) and a one-epoch embedding on 200 and on 2,000
64-pixel PNGs per domain, each run in a fresh process that reports its own peak RSS
(``resource.getrusage``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mapguard.checkpoint import ModelMeta, save_checkpoint
from mapguard.models import create_model

pytest.importorskip("resource")  # POSIX only

ARCH = "torchvision:shufflenet_v2_x0_5"  # takes any side; 0.35 M parameters
SIDE = 64  # a held split would cost 4 * 3 * 64 * 64 = 48 KiB of floats per image

#: One run of each command; prints the process's peak RSS in KiB (Linux ``ru_maxrss`` unit).
SCRIPTS = {
    "protect": """
        from mapguard.protect import protect
        protect(model, source=src, targets=[tgt], out=out, device="cpu", progress=False,
                options={"epochs": 1, "batch_size": 64})
        """,
    "embed": """
        from mapguard.watermark import DEFAULT_MASK, EmbedConfig, embed
        from protocols import keys
        key = keys.generate_keypair(out + ".key").private_path
        cfg = EmbedConfig(n_secrets=2, null_keys_per_secret=9, n_verification=32, min_size=8,
                          max_size=10, mask_images=None, export=False,
                          mask=DEFAULT_MASK.replace(epochs=1))
        embed(model, src, keys.load_private_key(key), cfg, out=out, device="cpu",
              progress=False)
        """,
}
PEAK = """
    import json, resource, sys
    model, src, tgt, out = sys.argv[1:5]
    {run}
    print(json.dumps({{"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
    """


def _folder(root: Path, n: int, tint: int) -> Path:
    """``n`` random PNGs in 4 classes (no train/test folders: an 80/20 split from the seed)."""
    rng = np.random.default_rng(n + tint)
    for i in range(n):
        folder = root / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        px = rng.integers(0, 160, (SIDE, SIDE, 3), dtype=np.uint8)
        px[..., tint] += 90
        Image.fromarray(px).save(folder / f"{i:05d}.png", compress_level=1)
    return root


def _peak_kib(command: str, model: Path, root: Path, n: int) -> int:
    src, tgt = _folder(root / f"src{n}", n, 0), _folder(root / f"tgt{n}", n, 1)
    script = textwrap.dedent(PEAK).format(run=textwrap.dedent(SCRIPTS[command]).strip())
    args = [sys.executable, "-c", script, str(model), str(src), str(tgt), str(root / f"p{n}.pt")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_kib"]


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_peak_memory_does_not_grow_with_the_number_of_images(command: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "m.pt"
    meta = ModelMeta(arch=ARCH, num_classes=4, classes=("c0", "c1", "c2", "c3"),
                     input_size=(3, SIDE, SIDE))  # fmt: skip
    save_checkpoint(create_model(ARCH, num_classes=4).eval(), meta, model)
    small, large = (_peak_kib(command, model, tmp_path, n) for n in (200, 2000))
    print(f"{command} peak RSS: 200 images {small / 1024:.0f} MiB, 2,000 images "
          f"{large / 1024:.0f} MiB")  # fmt: skip
    # Holding the 1,600 + 1,600 training images would add about 150 MiB of floats.
    assert large <= 1.10 * small + 16 * 1024, (small, large)
