"""Scale: throughput, streaming memory and verify time of torchvision resnet18 at 32..224 px.

The model is ``create_model("torchvision:resnet18", num_classes=10)`` (random weights, the input
``Normalize`` first, pixels in ``[0, 1]``), one per side, the same for every phase. Three tables:

1. **Training throughput**, images per second, on the same ``--images`` MNIST training images at
   the same ``--batch-size`` (``load_data("builtin:mnist", size=S).take(n, seed=0)``):

   * *fine-tune*: every weight trained, train mode, SGD (momentum 0.9), one optimiser step per
     batch, ``n // batch`` steps, no warm-up; counted: the ``n // batch * batch`` images through
     forward + backward; timed: the loop (the loss read back every step, as the learner does).
   * *MAP mask*: ``learn_mask`` as the ``map`` method calls it (``MaskConfig`` defaults, one
     epoch), keep = those MNIST images, degrade = as many optdigits images (``TensorSource``);
     counted and timed by the learner itself (``MaskResult.images`` / ``.seconds``): every image
     of every source through the masked model, caching the teacher's keep logits included.
   * *embed mask*: ``mapguard.watermark.embed`` on the module (``meta=ModelMeta(input_size=(3, S,
     S))``, data ``(train, holdout)``: the same MNIST images, 100 test images; the default
     recipe with one mask epoch, not adapted, no ``.pt2`` export); counted and timed: the
     ``learn_mask`` call of the embed walk only (its ``MaskResult``: source + random-key +
     secret-trigger batches, one image of the placeholder degrade source); the walk's total
     ``seconds`` (evaluation, writing, self-check) is printed beside it.

   Target: both mask rates at least 0.75x fine-tuning at every side.
2. **Streaming memory**: peak RSS (``ru_maxrss`` of a fresh process per measurement) of one pass
   of ``data_loader(open_data(folder, split="all", size=S))`` (no workers) over ImageFolders of
   ``--stream-images`` random smooth PNGs (written once into the cache), and of the same
   process with its imports alone; the process is started through a bare Python launcher (a
   forked child's ``ru_maxrss`` would start at this process's size). Target: every folder's
   peak within 10% of the first's.
3. **Verify time**: wall time of ``python -m mapguard verify protected.pt --watermark owner.wm
   --claim-nonce ...`` (a subprocess, the committed analysis, CPU) on each side's embed output,
   next to the wall time of ``python -c "import torch, torchvision"`` measured just before it.

Usage::

    python -m benchmarks.scale --quick              # 32 and 64 px, 128 images: a few minutes
    python -m benchmarks.scale                      # 32, 64, 128, 224 px, 512 images
    python -m benchmarks.scale --device cuda --sizes 224 --images 2048 --threads 8
    python -m benchmarks.scale --device cuda --amp --sizes 224 --images 2048 --threads 8

Caches (data, PNG folders, embed outputs) live under ``$MAPGUARD_CACHE_DIR`` or the user cache
folder (``bench-scale/``); the throwaway owner keys' attempt log too (``MAPGUARD_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import platformdirs
import torch
import torch.nn.functional as F
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from torch import nn

from mapguard.checkpoint import ModelMeta
from mapguard.data import ImageSet, data_loader, load_data, open_data
from mapguard.masking import MaskConfig, MaskResult, TensorSource, learn_mask
from mapguard.models import create_model
from mapguard.watermark import DEFAULT_MASK, MODEL_FILE, WATERMARK_FILE, EmbedConfig, embed

ARCH = "torchvision:resnet18"
TARGET_RATIO = 0.75  # mask learning vs fine-tuning, images/s
RSS_TOLERANCE = 0.10  # largest vs smallest streamed folder, peak RSS
HOLDOUT = 100  # held-out images of an embedding (evaluation and the verification set)
NONCE = "benchmarks.scale"


def _root() -> Path:
    root = os.environ.get("MAPGUARD_CACHE_DIR") or platformdirs.user_cache_dir("mapguard")
    return Path(root) / "bench-scale"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _machine(device: torch.device, threads: int) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    import torchvision

    return (f"{cpus} CPUs ({os.cpu_count()} on the machine), {threads} torch thread(s); "
            f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"Python {platform.python_version()}; device {device}: {name}")  # fmt: skip


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- 1. training throughput -------------------------------------------------------------------


def _model(side: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(side)
        return create_model(ARCH, num_classes=10).eval()


def _finetune(
    model: nn.Module, data: ImageSet, batch: int, device: torch.device, amp: bool = False
) -> float:
    """Images/s of plain fine-tuning: all weights, train mode, one SGD step per batch (``amp``:
    bf16 autocast and channels-last, as ``--amp`` runs mapguard's own loops)."""
    layout = torch.channels_last if amp else torch.contiguous_format
    net = copy.deepcopy(model).to(device).train()
    if amp:
        net = net.to(memory_format=layout)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
    x, y = data.floats(), data.labels
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    steps = len(x) // batch
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        idx = order[i * batch : (i + 1) * batch]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(x[idx].to(device).contiguous(memory_format=layout))
        loss = F.cross_entropy(logits.float(), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def _map_mask(model: nn.Module, keep: ImageSet, degrade: ImageSet, batch: int, device,  # noqa: ANN001
              amp: bool = False) -> float:  # fmt: skip
    """Images/s of MAP mask learning, as the learner counts them."""
    cfg = MaskConfig(epochs=1, batch_size=batch, seed=0)
    result = learn_mask(
        model,
        keep=TensorSource(keep.floats(), keep.labels, seed=0, name=keep.name),
        degrade=TensorSource(degrade.floats(), degrade.labels, seed=100, name=degrade.name),
        config=cfg,
        device=device,
        progress=False,
        amp=amp,
    )
    return result.images_per_second


@dataclass(frozen=True)
class _Embedded:
    """One side's embedding: the mask phase's rate, and the walk's time or its error."""

    mask_rate: float | None
    seconds: float | None
    out: Path | None
    error: str = ""


def _embed(model: nn.Module, train: ImageSet, holdout: ImageSet, batch: int, device, out: Path,  # noqa: ANN001, ANN202
           amp: bool = False):  # fmt: skip
    """Embed a watermark into ``out``; an error of the walk is kept, not raised.

    The one look inside the walk: its ``learn_mask`` is wrapped to read the ``MaskResult`` (the
    embed result reports only the walk's total time); nothing else changes, and the mask
    phase's rate is known even when a later step of the walk fails.
    """
    from mapguard.watermark import _recipe

    seen: list[MaskResult] = []

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(learn_mask(*args, **kwargs))
        return seen[-1]

    # adapt="off": the learner alone is timed (a large model's stopping rule would add its
    # rehearsals to the mask phase; benchmarks.embed_real measures the adapted recipe)
    cfg = EmbedConfig(mask=DEFAULT_MASK.replace(epochs=1, batch_size=batch), mask_images=None,
                      export=False, adapt="off")  # fmt: skip
    meta = ModelMeta(arch=ARCH, num_classes=10, input_size=(3, train.side, train.side))
    try:
        with mock.patch.object(_recipe, "learn_mask", spy):
            res = embed(model, (train, holdout), Ed25519PrivateKey.generate(), cfg, out=out,
                        force=True, meta=meta, device=str(device), progress=False,
                        amp=amp)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
        rate = seen[0].images_per_second if seen else None
        return _Embedded(rate, None, None, f"{type(exc).__name__}: {exc}")
    return _Embedded(seen[0].images_per_second, res.seconds, out)


def _throughput_row(side: int, args: argparse.Namespace, device: torch.device):  # noqa: ANN202
    """Table 1's row for ``side`` and the embedding (whose output table 3 verifies)."""
    model = _model(side)
    train = load_data("builtin:mnist", split="train", size=side, progress=False)
    train = train.take(args.images, seed=0)
    other = load_data("builtin:optdigits", split="train", size=side, progress=False)
    degrade = other.take(min(args.images, len(other)), seed=0)
    hold = load_data("builtin:mnist", split="test", size=side, progress=False).take(HOLDOUT, seed=0)
    plain = _finetune(model, train, args.batch_size, device, args.amp)
    masked = _map_mask(model, train, degrade, args.batch_size, device, args.amp)
    out = _root() / f"embed-{side}px{'-amp' if args.amp else ''}"
    emb = _embed(model, train, hold, args.batch_size, device, out, args.amp)
    wm = emb.mask_rate if emb.mask_rate is not None else float("nan")
    ok = masked >= TARGET_RATIO * plain and wm >= TARGET_RATIO * plain
    walk = f"{emb.seconds:.1f}" if emb.seconds is not None else "failed (below)"
    row = (f"| {side} | {plain:.1f} | {masked:.1f} | {masked / plain:.2f}x | {wm:.1f} | "
           f"{wm / plain:.2f}x | {walk} | {'yes' if ok else 'NO'} |")  # fmt: skip
    return row, emb


# --- 2. streaming memory ----------------------------------------------------------------------


def _folder(n: int, side: int) -> Path:
    """An ImageFolder of ``n`` smooth random PNGs (10 classes) at ``side`` px, written once."""
    root = _root() / f"stream-{side}px-{n}"
    if root.exists():
        return root
    stage = root.with_name(root.name + ".part")
    rng = np.random.default_rng(n)
    for i in range(n):
        folder = stage / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        coarse.resize((side, side), Image.BILINEAR).save(folder / f"{i:05d}.png")
    stage.rename(root)
    return root


def _stream_child(folder: str, side: int, batch: int) -> None:
    """(In the fresh process) one pass over ``folder`` (``-``: none, the imports alone); prints
    the images streamed and the peak RSS as JSON."""
    n = 0
    if folder != "-":
        loader = data_loader(open_data(folder, split="all", size=side), batch_size=batch, seed=0)
        n = sum(int(x.shape[0]) for x, _ in loader)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes vs KiB
    print(json.dumps({"images": n, "rss_mib": rss_mib}))


def _python(args: list[str], threads: int) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)


def _fresh_rss(folder: str, side: int, batch: int, threads: int) -> dict | str:
    """Peak RSS of a stream child, or the error's last line.

    The child is started by a bare Python launcher, not by this process: on Linux a forked
    child's ``ru_maxrss`` starts at its parent's resident size (the copied address space is
    counted before ``exec``), which here is the models and data of table 1.
    """
    launch = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    child = [sys.executable, "-m", "benchmarks.scale", "--stream-child", folder, "--stream-size",
             str(side), "--batch-size", str(batch), "--threads", str(threads)]  # fmt: skip
    proc = _python(["-c", launch, *child], threads)
    if proc.returncode:
        return (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _stream_rows(counts: list[int], side: int, batch: int, threads: int) -> list[str]:
    base = _fresh_rss("-", side, batch, threads)
    rows = [f"| imports only | 0 | {base['rss_mib']:.0f} | | |" if isinstance(base, dict)
            else f"| imports only | failed: {base} | | | |"]  # fmt: skip
    first = None
    for n in counts:
        got = _fresh_rss(str(_folder(n, side)), side, batch, threads)
        if isinstance(got, str):
            rows.append(f"| {n:,} | failed: {got} | | | |")
            continue
        first = first or got["rss_mib"]
        rel = got["rss_mib"] / first - 1
        rows.append(f"| {n:,} | {got['images']:,} | {got['rss_mib']:.0f} | {rel:+.1%} | "
                    f"{'yes' if abs(rel) <= RSS_TOLERANCE else 'NO'} |")  # fmt: skip
    return rows


# --- 3. verify time ---------------------------------------------------------------------------


def _wall(args: list[str], threads: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = _python(args, threads)
    return time.perf_counter() - t0, proc.returncode


def _verify_row(side: int, out: Path, threads: int) -> str:
    imports, _ = _wall(["-c", "import torch, torchvision"], threads)
    cmd = ["-m", "mapguard", "verify", str(out / MODEL_FILE), "--watermark",
           str(out / WATERMARK_FILE), "--claim-nonce", NONCE, "--out", str(out / "verify.json"),
           "--force"]  # fmt: skip
    seconds, rc = _wall(cmd, threads)
    verdict = {0: "evidenced", 1: "not evidenced"}.get(rc, f"error (exit {rc})")
    return f"| {side} | {seconds:.1f} | {imports:.1f} | {seconds - imports:.1f} | {verdict} |"


# --- the run ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="image sides, comma-separated (32,64,128,224)")
    p.add_argument("--images", type=int, default=None, help="images timed per phase (512)")
    p.add_argument("--batch-size", type=int, default=None, help="every phase's batch (64)")
    p.add_argument("--stream-images", default="1000,10000", help="folder sizes streamed")
    p.add_argument("--stream-size", type=int, default=None, help="side streamed (largest)")
    p.add_argument("--quick", action="store_true", help="32 and 64 px, 128 images, batch 32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast + channels-last (CUDA)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, here and in children")
    p.add_argument("--stream-child", default=None, help=argparse.SUPPRESS)
    return p


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"scale: bad {what} {text!r}: expected integers like 32,64") from None
    if not values or min(values) < 1:
        raise SystemExit(f"scale: bad {what} {text!r}: expected positive integers")
    return values


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stream_child:  # the fresh process of one table-2 measurement
        return _stream_child(args.stream_child, args.stream_size, args.batch_size)
    sizes = _ints(args.sizes or ("32,64" if args.quick else "32,64,128,224"), "--sizes")
    args.images = args.images or (128 if args.quick else 512)
    args.batch_size = args.batch_size or (32 if args.quick else 64)
    if args.images < args.batch_size:
        raise SystemExit(f"scale: --images {args.images} is below --batch-size {args.batch_size}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("scale: --device cuda asked, but torch sees no CUDA device")
    if args.amp and args.device != "cuda":
        raise SystemExit("scale: --amp needs --device cuda")
    device = torch.device(args.device)
    _root().mkdir(parents=True, exist_ok=True)
    os.environ["MAPGUARD_DATA_DIR"] = str(_root() / "attempts")  # throwaway keys' attempt log
    t0 = time.perf_counter()
    amp = "; --amp (bf16 autocast, channels-last)" if args.amp else ""
    print(f"# {ARCH}, 10 classes, random weights — {_machine(device, args.threads)}{amp}\n")
    print(f"## 1. Training images/s ({args.images} MNIST images, batch {args.batch_size}; "
          f"target: mask >= {TARGET_RATIO}x fine-tune)\n")  # fmt: skip
    print("| side | fine-tune | MAP mask | vs fine-tune | embed mask | vs fine-tune "
          "| embed walk s | target met |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|", flush=True)
    embedded = {}
    for side in sizes:
        row, embedded[side] = _throughput_row(side, args, device)
        print(row, flush=True)
    for side, emb in embedded.items():
        if emb.error:
            after = " after its mask phase" if emb.mask_rate is not None else ""
            print(f"\n{side} px: the embed walk failed{after}: {emb.error}")
    side = args.stream_size or max(sizes)
    counts = _ints(args.stream_images, "--stream-images")
    print(f"\n## 2. Peak RSS of one streaming pass ({side} px, batch {args.batch_size}, "
          f"no workers; target: within {RSS_TOLERANCE:.0%} of the first)\n")  # fmt: skip
    print("| folder images | streamed | peak RSS MiB | vs first | target met |")
    print("|---|---|---|---|---|", flush=True)
    for row in _stream_rows(counts, side, args.batch_size, args.threads):
        print(row, flush=True)
    print("\n## 3. `mapguard verify` wall time (committed analysis, CPU, subprocess)\n")
    print("| side | verify s | `import torch, torchvision` s | difference s | verdict |")
    print("|---|---|---|---|---|", flush=True)
    for side, emb in embedded.items():
        if emb.out is None:
            print(f"| {side} | no embed output | | | |", flush=True)
        else:
            print(_verify_row(side, emb.out, args.threads), flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
