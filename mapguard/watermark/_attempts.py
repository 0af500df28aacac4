"""The embedding-attempt log: every commitment an owner key made for a model is counted.

Re-running ``embed`` until the self-check looks good, or keeping the best of several secret sets,
selects secrets that happen to be strong on models in general and so raises the false-accusation
rate on innocent models. Each attempt is therefore appended to a log *before* the self-check is
computed (a run stopped after seeing a poor self-check has already been counted), its number is
written into the commitment's analysis, and the verifier multiplies the p-value by it
(Bonferroni). The digests of the earlier attempts' commitments are committed too, so a report can
show them.

The log is one JSON line per attempt in ``$MAPGUARD_DATA_DIR/attempts/<key fingerprint>.jsonl``
(default: the user data directory). It is as honest as the owner's machine: an owner who deletes
it, or embeds on another machine, is not counted; the report states the attempt number as the
owner's own record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from protocols import canonical

__all__ = ["DATA_ENV", "attempt_log", "previous_attempts", "record_attempt"]

DATA_ENV = "MAPGUARD_DATA_DIR"


def attempt_log(fingerprint: str) -> Path:
    """The log file of the owner key ``fingerprint``."""
    root = os.environ.get(DATA_ENV) or platformdirs.user_data_dir("mapguard")
    return Path(root) / "attempts" / (fingerprint.removeprefix("SHA256:") + ".jsonl")


def previous_attempts(fingerprint: str, model_sha256: str) -> list[str]:
    """Commitment digests of this key's earlier attempts on the model ``model_sha256``."""
    path = attempt_log(fingerprint)
    if not path.exists():
        return []
    digests = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn last line from a killed run still counts below as nothing
        if isinstance(entry, dict) and entry.get("model_sha256") == model_sha256:
            digests.append(str(entry.get("commitment_digest", "")))
    return digests


def record_attempt(fingerprint: str, model_sha256: str, commitment_digest: str) -> None:
    """Append one attempt (flushed and synced before the embedding goes on)."""
    path = attempt_log(fingerprint)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "model_sha256": model_sha256,
        "commitment_digest": commitment_digest,
        "time": canonical.now_rfc3339(),
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
