"""Fixtures: real (tiny) verifications run with ``mapguard verify``, and their inputs.

A full ``mapguard embed`` takes minutes on 2 cores, so the owner's files are built here the way
``embed`` writes them (signed commitment statement; signed watermark file with inline
verification images), with the arbiter-side ``protocols``/``verification`` functions. The
verifications themselves are the real command line:

- ``suspect.ts``: a TorchScript copy of the session's ``tiny_model`` that misclassifies whenever
  one of the owner's secret triggers is stamped on its input — it carries the watermark, so the
  verdict is *evidenced* at the exact p-value floor;
- ``tiny.pt``: the plain ``tiny_checkpoint`` — an independent model, *not evidenced*.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import random
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from protocols import canonical, dsse, keys, openings, statements

CREATED = "2025-03-01T12:00:00Z"
N_SECRETS, NULL_KEYS, N_IMAGES = 3, 19, 30
FAMILY, PARAMS = "patch", {"min_size": 4, "max_size": 6}


@pytest.fixture(scope="session")
def html_tools() -> types.ModuleType:
    """tests/report/_html.py (loaded by path: the suite runs with --import-mode=importlib)."""
    path = Path(__file__).parent / "_html.py"
    spec = importlib.util.spec_from_file_location("report_html_tools", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass(frozen=True)
class ReportInputs:
    """Paths of a complete set of report inputs, and the documents they hold."""

    dir: Path
    result: Path
    result_plain: Path
    result_independent: Path
    commitment: Path
    watermark: Path
    pubkey: Path
    private_key_path: Path
    private_key: Any
    result_predicate: dict[str, Any]
    independent_predicate: dict[str, Any]
    commitment_predicate: dict[str, Any]
    watermark_doc: dict[str, Any]


class _Carrier(torch.nn.Module):
    """A suspect that carries the watermark: wrong answers whenever a secret trigger is present."""

    def __init__(self, base: torch.nn.Module, triggers: list[Any]) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("support", torch.stack([t.alpha_map >= 1 for t in triggers]).float())
        self.register_buffer("pattern", torch.stack([t.pattern for t in triggers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base(x)
        hit = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for i in range(self.pattern.shape[0]):
            diff = ((x - self.pattern[i]).abs() * self.support[i]).amax(dim=(1, 2, 3))
            hit = hit | (diff < 1e-6)
        return torch.where(hit[:, None], logits.roll(1, dims=1), logits)


def _owner_files(d: Path, key: Any, fpr: str, images: Any, labels: Any) -> dict[str, Any]:
    """Commitment statement (signed) and watermark file (signed), as ``mapguard embed`` writes."""
    from verification.triggers import get_trigger_family, random_secret
    from verification.watermark_file import encode_verification_set, seal_watermark

    rng = np.random.default_rng(7)
    secrets = [random_secret(rng) for _ in range(N_SECRETS)]
    triggers = [get_trigger_family(FAMILY).derive(s, params=PARAMS) for s in secrets]
    core = {
        "secrets": [
            {"secret": s.hex(), "trigger": t.describe()} for s, t in zip(secrets, triggers)
        ],
        "trigger_family": {"name": FAMILY, "parameters": PARAMS},
        "verification_set": encode_verification_set(
            images, labels, reference="builtin:mnist#test", indices=list(range(len(labels)))
        ),
    }
    public, opened = openings.make_commitments(core, rng=random.Random(3))
    model = {
        "sha256": canonical.sha256_hex(b"protected"),
        "name": "protected.pt",
        "format": "mapguard-checkpoint",
    }
    plan = {
        "n_secrets": N_SECRETS,
        "null_keys_per_secret": NULL_KEYS,
        "queries_per_key": N_IMAGES,
        "test": "exact max-rank",
    }
    method = {"name": "map-watermark", "parameters": {"arch": "vgg_tiny", "mask": {"epochs": 3}}}
    predicate = {
        "schema_version": "1",
        "created": CREATED,
        "tool": {"name": "mapguard", "version": "0.1.0"},
        "owner_key_fingerprint": fpr,
        "model": model,
        "method": method,
        "trigger_family": core["trigger_family"],
        "commitments": public,
        "verification": plan,
    }
    stmt = statements.make_statement(
        subjects=[(model["name"], model["sha256"])],
        predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
        predicate=predicate,
    )
    dsse.write_envelope(d / "commitment.dsse.json", statements.sign_statement(stmt, key))
    watermark = {
        "schema_version": "1",
        "created": CREATED,
        "tool": {"name": "mapguard", "version": "0.1.0"},
        "owner_key_fingerprint": fpr,
        "owner_public_key": key.public_key().public_bytes_raw().hex(),
        "model": {**model, "num_classes": 10},
        "method": method,
        **core,
        "verification": plan,
        "calibration": {
            "clean_accuracy_before": 0.93,
            "clean_accuracy_after": 0.925,
            "secret_trigger_accuracy": [0.1, 0.12, 0.09],
            "random_key_accuracy": 0.9,
            "psnr_db": 24.5,
        },
        "openings": opened,
        "commitment_statement_sha256": statements.statement_digest(stmt),
    }
    (d / "owner.wm").write_bytes(seal_watermark(watermark, key))
    return {"predicate": predicate, "watermark": watermark, "triggers": triggers}


def _verify(*args: Any) -> None:
    from mapguard._cli import cli

    res = CliRunner().invoke(cli, ["verify", *map(str, args), "--claim-nonce", "report-claim"])
    assert res.exit_code in (0, 1), res.output


def _predicate(path: Path, public_key: Any) -> dict[str, Any]:
    """The result predicate of a signed (verified here) or plain result file."""
    doc = canonical.read_json(path)
    if "payload" not in doc:
        return doc
    return statements.verify_statement(
        doc, public_key, expected_predicate_type=statements.RESULT_PREDICATE_TYPE
    )["predicate"]


@pytest.fixture(scope="session")
def report_inputs(tiny_model, tiny_checkpoint, mnist_small, tmp_path_factory) -> ReportInputs:
    d = tmp_path_factory.mktemp("report-inputs")
    info = keys.generate_keypair(d / "owner")
    key = keys.load_private_key(info.private_path)
    test = mnist_small[1]
    owner = _owner_files(
        d, key, info.fingerprint, test.images[:N_IMAGES].numpy(), test.labels[:N_IMAGES].numpy()
    )
    suspect = d / "suspect.ts"
    with warnings.catch_warnings():  # TorchScript is deprecated upstream but still a suspect format
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(
            torch.jit.script(_Carrier(copy.deepcopy(tiny_model).eval(), owner["triggers"])), suspect
        )
    wm = ["--watermark", d / "owner.wm"]
    _verify(suspect, *wm, "--key", info.private_path, "--out", d / "result.json")
    _verify(suspect, *wm, "--out", d / "result-plain.json")
    _verify(tiny_checkpoint, *wm, "--key", info.private_path, "--out", d / "independent.json")
    return ReportInputs(
        dir=d,
        result=d / "result.json",
        result_plain=d / "result-plain.json",
        result_independent=d / "independent.json",
        commitment=d / "commitment.dsse.json",
        watermark=d / "owner.wm",
        pubkey=info.public_path,
        private_key_path=info.private_path,
        private_key=key,
        result_predicate=_predicate(d / "result.json", key.public_key()),
        independent_predicate=_predicate(d / "independent.json", key.public_key()),
        commitment_predicate=owner["predicate"],
        watermark_doc=owner["watermark"],
    )
