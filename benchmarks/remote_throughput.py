"""Remote verification throughput: ``mapguard verify URL`` against a local inference server.

The embedding of ``benchmarks.verify_speed`` (vgg_small on builtin:mnist, the default recipe) is
served on 127.0.0.1, in its own process with one torch thread, by mapguard's Open Inference
Protocol server (``mapguard._oip_server``: KServe v2 REST from the standard library) and, with
``--kserve-python`` (a Python with ``kserve`` installed), by KServe's own ``ModelServer``
(``benchmarks/remote_kserve_server.py``); it is verified through the endpoint with the committed
analysis, at each ``--batch-sizes`` (images per request). Printed: wall time of the command,
queries (images, probe and re-asked images included), requests, queries/s over the command's wall
time, and whether the p-value is the local file's. Results and query logs go to the user cache
dir (``bench-remote/``).

Run: ``python -m benchmarks.remote_throughput [--batch-sizes 16,64,256] [--embedding DIR]
[--kserve-python /tmp/kserve-venv/bin/python]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import platformdirs

from benchmarks.verify_speed import NONCE, _cached_embedding, _make_embedding

CACHE = Path(platformdirs.user_cache_dir("mapguard")) / "bench-remote"
_SERVE = """
import sys, time, torch
from mapguard._oip_server import OipServer
from mapguard.checkpoint import load_checkpoint
from mapguard.training import input_side
model, meta = load_checkpoint(sys.argv[1])
with OipServer(model.eval(), side=input_side(meta), num_classes=meta.num_classes) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _verify(args: list[str]) -> tuple[float, dict, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mapguard", "verify", *args, "--json"],
                          env=_env(), capture_output=True, text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"verify failed: {proc.stderr.strip()}")
    return seconds, json.loads(proc.stdout), proc.returncode


def _mapguard_server(model: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", _SERVE, str(model)], env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    return proc, proc.stdout.readline().strip()


def _kserve_server(python: str, model: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).with_name("remote_kserve_server.py")
    site = sysconfig.get_paths()["purelib"]
    proc = subprocess.Popen([python, str(script), str(model), str(port), site], env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):  # bounded: at most 2 minutes to start
        try:
            urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1).read()
            break
        except OSError:
            time.sleep(0.5)
    return proc, f"{base}/v2/models/suspect/infer"


def _rows(name: str, url: str, batches: list[int], common: list[str], local: dict) -> None:
    for batch in batches:
        out = CACHE / f"remote-{name}-b{batch}.json"
        for old in (out, out.with_name(out.stem + ".querylog.jsonl")):
            old.unlink(missing_ok=True)
        seconds, res, _ = _verify([url, *common, "--out", str(out), "--batch-size",
                                   str(batch)])  # fmt: skip
        log = res["query_log"]
        same = res["test"]["pvalue"] == local["test"]["pvalue"]
        rate = log["queries"] / seconds
        print(f"| {name} | {batch} | {seconds:.1f} | {log['queries']} | {log['requests']} | "
              f"{rate:.0f} | {'yes' if same else 'NO'} |", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="16,64,256")
    ap.add_argument("--embedding", type=Path, default=None, help="folder with protected.pt")
    ap.add_argument("--kserve-python", default=None, help="a Python with kserve installed")
    args = ap.parse_args(argv)
    wm = args.embedding or _cached_embedding() or _make_embedding()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    CACHE.mkdir(parents=True, exist_ok=True)
    common = ["--watermark", str(wm / "owner.wm"), "--claim-nonce", NONCE, "--force"]
    local_s, local, _ = _verify([str(wm / "protected.pt"), *common,
                                 "--out", str(CACHE / "local.json")])  # fmt: skip
    print(f"embedding: {wm}\nlocal file: {local_s:.1f} s, p = {local['test']['pvalue']:.3g}\n")
    print("| server | batch | wall s | queries | requests | queries/s | same p as the file |")
    print("|---|---|---|---|---|---|---|")
    servers = [("mapguard", lambda: _mapguard_server(wm / "protected.pt"))]
    if args.kserve_python:
        servers.append(("kserve", lambda: _kserve_server(args.kserve_python, wm / "protected.pt")))
    for name, start in servers:
        proc, url = start()
        try:
            _rows(name, url, batches, common, local)
        finally:
            proc.stdin.close()
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
