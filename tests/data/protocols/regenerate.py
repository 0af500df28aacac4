"""Provenance of the golden files in this directory (TEST KEYS ONLY; never use them for real).

Run once, from the repository root, to create them:  python tests/data/protocols/regenerate.py
Do NOT rerun to "fix" a failing golden test: golden files exist so that evidence written by an
older version keeps verifying. A format change needs a new version and new golden files.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import canonical, dsse, keys, openings, secretbox, statements

HERE = Path(__file__).parent
PASSPHRASE = b"mapguard-test-passphrase"
CREATED = "2025-01-01T00:00:00Z"


def test_key() -> Ed25519PrivateKey:
    seed = hashlib.sha256(b"mapguard protocols test key v1").digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def watermark_core() -> dict:
    rng = random.Random(1234)
    return {
        "secrets": [
            {"secret": rng.randbytes(32).hex(), "trigger": {"position": [i, 2 * i], "size": 4}}
            for i in range(3)
        ],
        "trigger_family": {"name": "patch", "parameters": {"size": 4, "alpha": 1.0}},
        "verification_set": {
            "reference": "builtin:cifar10/test",
            "sha256": hashlib.sha256(b"verification set").hexdigest(),
            "indices": [3, 14, 15, 92, 65],
        },
    }


def main() -> None:
    key = test_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (HERE / "test_ed25519.key").write_bytes(pem)
    (HERE / "test_ed25519_encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE),
        )
    )
    (HERE / "test_ed25519.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    fpr = keys.fingerprint(key.public_key())
    core = watermark_core()
    public, opened = openings.make_commitments(core, rng=random.Random(99))
    model_sha = hashlib.sha256(b"protected model").hexdigest()
    predicate = {
        "schema_version": "1",
        "created": CREATED,
        "tool": {"name": "mapguard", "version": "0.1.0"},
        "owner_key_fingerprint": fpr,
        "model": {"sha256": model_sha, "name": "resnet18-protected", "format": "safetensors"},
        "method": {"name": "map-watermark", "parameters": {"sparsity": 0.1}},
        "trigger_family": core["trigger_family"],
        "commitments": public,
        "verification": {
            "n_secrets": 3,
            "null_keys_per_secret": 20,
            "queries_per_key": 100,
            "test": "binomial",
        },
    }
    stmt = statements.make_statement(
        subjects=[("resnet18-protected.safetensors", model_sha)],
        predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
        predicate=predicate,
    )
    env = statements.sign_statement(stmt, key)
    dsse.write_envelope(HERE / "commitment-v1.dsse.json", env, force=True)
    watermark = {
        "schema_version": "1",
        "created": CREATED,
        "tool": {"name": "mapguard", "version": "0.1.0"},
        "owner_key_fingerprint": fpr,
        "model": {"sha256": model_sha, "name": "resnet18-protected", "format": "safetensors"},
        "method": predicate["method"],
        **core,
        "calibration": {"clean_accuracy": 0.91},
        "openings": opened,
        "commitment_statement_sha256": statements.statement_digest(stmt),
    }
    canonical.write_json(HERE / "watermark-v1.json", watermark, force=True)
    result = {
        "schema_version": "1",
        "created": CREATED,
        "tool": {"name": "mapguard-verify", "version": "0.1.0"},
        "suspect": {"name": "suspect.pt2", "sha256": "cd" * 32, "format": "torch.export"},
        "watermark": {
            "commitment_digest": statements.statement_digest(stmt),
            "model_sha256": model_sha,
        },
        "query_mode": "labels",
        "queries_used": 6300,
        "test": {
            "method": "binomial",
            "statistic": 0.83,
            "pvalue": 1.5e-12,
            "alternative": "greater",
            "alpha": 0.01,
            "n": 300,
            "per_secret": [{"index": i, "pvalue": 1e-4} for i in range(3)],
        },
        "effect": {"estimate": 0.73, "ci_low": 0.65, "ci_high": 0.8, "confidence_level": 0.95},
        "negative_controls": {"null_keys": {"pvalue_median": 0.52}},
        "verdict": "evidenced",
    }
    result_stmt = statements.make_statement(
        subjects=[("suspect.pt2", "cd" * 32)],
        predicate_type=statements.RESULT_PREDICATE_TYPE,
        predicate=result,
    )
    dsse.write_envelope(
        HERE / "result-v1.dsse.json", statements.sign_statement(result_stmt, key), force=True
    )
    (HERE / "secretbox-v1.bin").write_bytes(
        secretbox.encrypt(b"golden secretbox plaintext\n", PASSPHRASE, log2_n=10)
    )


if __name__ == "__main__":
    main()
