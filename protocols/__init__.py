"""Formats both parties must agree on byte for byte: canonical JSON, keys, DSSE envelopes,
in-toto statements, hash commitments and versioned JSON Schemas.

``protocols`` knows nothing of models or statistics and imports neither ``mapguard`` nor
``verification``; an arbiter can audit it alone.

Example:
    >>> import tempfile, pathlib
    >>> from protocols import commitments, dsse, keys
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> info = keys.generate_keypair(d / "owner")
    >>> c = commitments.commit({"secrets": ["00" * 32]})
    >>> commitments.open_commitment(c.digest, {"secrets": ["00" * 32]}, c.nonce)
    True
    >>> env = dsse.sign_envelope(b"payload", "text/plain", keys.load_private_key(info.private_path))
    >>> dsse.verify_envelope(env, keys.load_public_key(info.public_path))
    b'payload'
"""

from protocols import (
    canonical,
    commitments,
    dsse,
    errors,
    fileio,
    keys,
    openings,
    schemas,
    secretbox,
    statements,
)

__all__ = [
    "canonical",
    "commitments",
    "dsse",
    "errors",
    "fileio",
    "keys",
    "openings",
    "schemas",
    "secretbox",
    "statements",
]
