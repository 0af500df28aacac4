"""The arbiter builds and signs the result document with ``verification`` and ``protocols`` only.

The arbiter's walk runs in a fresh interpreter that imports neither ``mapguard`` nor anything of
it; the signed result it writes passes :func:`verification.check.check`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from protocols import canonical, keys
from verification.check import check
from verification.verify import write_result
from verification.watermark_file import read_watermark

ARBITER = """
import sys
from pathlib import Path

from protocols import keys
from verification.backends import load_suspect
from verification.verify import VerifyConfig, result_predicate, verify, write_result
from verification.watermark_file import read_watermark, watermark_spec

watermark, suspect, key, out = sys.argv[1:]
wm = read_watermark(watermark)
config = VerifyConfig(null_keys_per_secret=wm.null_keys_per_secret, query_budget=1000)
with load_suspect(suspect, num_classes=wm.num_classes) as backend:
    result = verify(backend, watermark_spec(wm), config)
    isolation = backend.isolation
predicate = result_predicate(
    result,
    watermark=wm,
    suspect_name=Path(suspect).name,
    suspect_format="torch.export",
    tool_name="arbiter-tool",
    tool_version="0.0.1",
    isolation=isolation,
)
write_result(out, predicate, key=keys.load_private_key(key))
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "mapguard")
assert not loaded, loaded
"""


def test_an_arbiter_without_mapguard_writes_a_signed_result(embedded, tmp_path):
    arbiter = keys.generate_keypair(tmp_path / "arbiter")
    out = tmp_path / "result.json"
    args = [embedded.file("owner.wm"), embedded.file("protected.pt2"), arbiter.private_path, out]
    done = subprocess.run(
        [sys.executable, "-c", ARBITER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    res = check(out, arbiter.public_path)
    assert res.ok and res.kind == "result", res.items
    predicate = _predicate(out)
    wm = read_watermark(embedded.file("owner.wm"))
    assert predicate["tool"] == {"name": "arbiter-tool", "version": "0.0.1"}
    assert predicate["watermark"]["commitment_digest"] == wm.commitment_digest
    assert predicate["suspect"]["format"] == "torch.export"
    # 998 // (1 + 3 * (1 + 19)) = 16 images per key, as `mapguard verify --queries 1000` uses
    assert predicate["test"]["n"] == 16 and predicate["queries_used"] <= 1000
    assert predicate["verdict"] == "evidenced"


def _predicate(path):
    envelope = json.loads(path.read_text())
    return json.loads(base64.b64decode(envelope["payload"]))["predicate"]


def test_unsigned_result_is_canonical_json_and_refuses_to_overwrite(tmp_path):
    predicate = {"suspect": {"name": "m.pt2", "sha256": "0" * 64}, "verdict": "not_evidenced"}
    out = write_result(tmp_path / "r.json", predicate)
    assert out.read_bytes() == canonical.canonical_bytes(predicate) + b"\n"
    with pytest.raises(ValueError, match="exists"):
        write_result(out, predicate)
