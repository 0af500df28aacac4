"""What a watermark commitment commits to, and how an arbiter opens it.

The commitment predicate (``commitment-predicate-v1``) publishes three digests; the owner's
watermark file (``watermark-file-v1``) keeps the values and the nonces. Both sides derive the
committed values from the watermark file the same way, so this is part of the protocol:

- ``secret``: ``{"secrets": [secrets[i].secret, ...]}`` (hex strings, in order);
- ``trigger``: ``{"trigger_family": trigger_family, "triggers": [secrets[i].trigger, ...]}``;
- ``verification_set``: the ``verification_set`` object as stored.

each committed as a JSON object with :func:`protocols.commitments.commit`.

Example:
    >>> wm = {"secrets": [{"secret": "ab" * 32, "trigger": {"position": [0, 0]}}],
    ...       "trigger_family": {"name": "patch", "parameters": {"size": 4}},
    ...       "verification_set": {"reference": "builtin:cifar10/test", "sha256": "00" * 32,
    ...                            "indices": [1, 2, 3]}}
    >>> public, openings = make_commitments(wm)
    >>> sorted(public) == sorted(openings) == ["secret", "trigger", "verification_set"]
    True
    >>> "nonce" in public["secret"]
    False
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols import commitments, schemas
from protocols.errors import CommitmentError, InputError

__all__ = ["PARTS", "check_openings", "committed_values", "make_commitments"]

PARTS = ("secret", "trigger", "verification_set")


def committed_values(watermark: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The JSON objects committed to for each part of :data:`PARTS`.

    Raises:
        InputError: ``watermark`` lacks ``secrets`` / ``trigger_family`` / ``verification_set``
            or a secret entry lacks ``secret`` / ``trigger``.
    """
    try:
        entries = list(watermark["secrets"])
        values = {
            "secret": {"secrets": [entry["secret"] for entry in entries]},
            "trigger": {
                "trigger_family": watermark["trigger_family"],
                "triggers": [entry["trigger"] for entry in entries],
            },
            "verification_set": watermark["verification_set"],
        }
    except (KeyError, TypeError) as exc:
        raise InputError(f"watermark lacks field {exc} needed for its commitments") from None
    return values


def make_commitments(
    watermark: Mapping[str, Any], *, rng: Any = None
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Commit to the parts of ``watermark``.

    Args:
        watermark: at least ``secrets``, ``trigger_family`` and ``verification_set``.
        rng: nonce source, see :func:`protocols.commitments.commit` (``None`` in production).

    Returns:
        ``(public, openings)``: ``public`` is the predicate's ``commitments`` block
        (``{part: {"digest", "algorithm"}}``); ``openings`` is the watermark file's ``openings``
        block (``{part: {"digest", "nonce"}}``), which must stay private.
    """
    public: dict[str, dict[str, str]] = {}
    openings: dict[str, dict[str, str]] = {}
    for part, value in committed_values(watermark).items():
        c = commitments.commit(value, rng=rng)
        public[part] = c.public()
        openings[part] = {"digest": c.digest, "nonce": c.nonce}
    return public, openings


def check_openings(predicate: Mapping[str, Any], watermark: Mapping[str, Any]) -> None:
    """Check that a revealed watermark file opens a commitment predicate and agrees with it.

    Both documents are schema-validated first. Then every part must open its published digest,
    and the model digest, owner key, trigger family, method name and number of secrets must
    match.

    Raises:
        SchemaError: either document is malformed.
        CommitmentError: listing every mismatch found.
    """
    schemas.validate(predicate, "commitment-predicate-v1")
    schemas.validate(watermark, "watermark-file-v1")
    problems = _opening_problems(predicate["commitments"], watermark)
    problems += _consistency_problems(predicate, watermark)
    if problems:
        raise CommitmentError("watermark does not match its commitment: " + "; ".join(problems))


def _opening_problems(published: Mapping[str, Any], watermark: Mapping[str, Any]) -> list[str]:
    values = committed_values(watermark)
    problems = []
    for part in PARTS:
        nonce = watermark["openings"][part]["nonce"]
        if not commitments.open_commitment(published[part]["digest"], values[part], nonce):
            problems.append(f"{part} does not open commitment {published[part]['digest']}")
    return problems


def _consistency_problems(predicate: Mapping[str, Any], watermark: Mapping[str, Any]) -> list[str]:
    pairs = {
        "model sha256": (predicate["model"]["sha256"], watermark["model"]["sha256"]),
        "owner key": (predicate["owner_key_fingerprint"], watermark["owner_key_fingerprint"]),
        "trigger family": (predicate["trigger_family"], watermark["trigger_family"]),
        "method": (predicate["method"]["name"], watermark["method"]["name"]),
        "number of secrets": (
            predicate["verification"]["n_secrets"],
            len(watermark["secrets"]),
        ),
    }
    return [
        f"{what}: committed {committed!r}, revealed {revealed!r}"
        for what, (committed, revealed) in pairs.items()
        if committed != revealed
    ]
