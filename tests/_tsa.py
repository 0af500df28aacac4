"""A real RFC 3161 time-stamp authority for the tests: OpenSSL's ``openssl ts -reply``.

``Authority.create(dir)`` makes a CA (``openssl req -x509``) and a TSA key and certificate
issued by it (``openssl ca``, so that the validity dates can be set; critical EKU
timeStamping, as RFC 3161 section 2.3 requires), and a TSA configuration file (policy OID,
signer, digests, accuracy). ``Authority.reply(query)`` answers a DER query as a TSA does;
``serve(authority)`` answers POSTs on 127.0.0.1 with it, for ``mapguard timestamp --tsa``.
Loaded by path (the suite runs with --import-mode=importlib): see :func:`load`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import importlib.util
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

POLICY = "1.3.6.1.4.1.99999.1"

_CONFIG = """\
[ca]
default_ca = ca_default
[ca_default]
dir = .
database = index.txt
new_certs_dir = issued
serial = ca-serial
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[tsa_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[tsa]
default_tsa = tsa_config
[tsa_config]
signer_cert = tsa.pem
signer_key = tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_alg = sha256
ess_cert_id_chain = no
serial = tsa-serial
crypto_device = builtin
"""


def load() -> types.ModuleType:
    """This module, loaded once by path."""
    name = "mapguard_tests_tsa"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


def require_openssl() -> str:
    """The ``openssl`` program, or skip the test."""
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed: the tests' time-stamp authority needs it")
    return path


def _run(cwd: Path, *args: str) -> None:
    done = subprocess.run(
        [require_openssl(), *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA and a TSA under it, in ``dir``."""

    dir: Path
    name: str

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def tsa(self) -> Path:
        return self.dir / "tsa.pem"

    @property
    def chain(self) -> Path:
        """The TSA's certificate followed by its CA's: what the arbiter gives ``--tsa-cert``."""
        path = self.dir / "chain.pem"
        if not path.exists():
            path.write_bytes(self.tsa.read_bytes() + self.ca.read_bytes())
        return path

    @classmethod
    def create(
        cls,
        d: Path,
        *,
        name: str = "Test TSA",
        ca_from: Authority | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> Authority:
        """A new TSA in ``d``: under a new CA, or under ``ca_from``'s; validity ``start`` ..
        ``end`` (``YYYYMMDDHHMMSSZ``; default from now for 30 days)."""
        d.mkdir(parents=True, exist_ok=True)
        (d / "openssl.cnf").write_text(_CONFIG.format(policy=POLICY))
        (d / "issued").mkdir(exist_ok=True)
        (d / "index.txt").write_text("")
        (d / "ca-serial").write_text("1000\n")
        (d / "tsa-serial").write_text("01\n")
        key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        if ca_from is None:
            _run(d, "req", "-x509", "-config", "openssl.cnf", *key, "-keyout", "ca.key",
                 "-out", "ca.pem", "-days", "3650", "-subj", f"/CN={name} Root CA",
                 "-extensions", "ca_ext")  # fmt: skip
        else:
            shutil.copy(ca_from.dir / "ca.key", d / "ca.key")
            shutil.copy(ca_from.ca, d / "ca.pem")
            (d / "ca-serial").write_text("2000\n")
        _run(d, "req", "-config", "openssl.cnf", *key, "-keyout", "tsa.key", "-out", "tsa.csr",
             "-subj", f"/CN={name}")  # fmt: skip
        dates = ["-startdate", start] if start else []
        dates += ["-enddate", end] if end else ["-days", "30"]
        _run(d, "ca", "-batch", "-config", "openssl.cnf", "-cert", "ca.pem", "-keyfile",
             "ca.key", "-in", "tsa.csr", "-out", "tsa.pem", "-extensions", "tsa_ext", "-notext",
             *dates)  # fmt: skip
        return cls(dir=d, name=name)

    def reply(self, query: bytes) -> bytes:
        """The TSA's DER reply to a DER ``TimeStampReq`` (``openssl ts -reply``)."""
        work = self.dir / "work"
        work.mkdir(exist_ok=True)
        (work / "query.tsq").write_bytes(query)
        _run(self.dir, "ts", "-reply", "-config", "openssl.cnf", "-queryfile",
             "work/query.tsq", "-out", "work/reply.tsr")  # fmt: skip
        return (work / "reply.tsr").read_bytes()

    def token_for(self, data: bytes, *, cert: bool = True) -> bytes:
        """A reply certifying SHA-256 of ``data`` (a query made by ``openssl ts -query``)."""
        work = self.dir / "work"
        work.mkdir(exist_ok=True)
        (work / "data.bin").write_bytes(data)
        _run(self.dir, "ts", "-query", "-data", "work/data.bin", "-sha256",
             *(["-cert"] if cert else []), "-out", "work/made.tsq")  # fmt: skip
        return self.reply((work / "made.tsq").read_bytes())


class _Handler(http.server.BaseHTTPRequestHandler):
    authority: Authority
    status: int = 200
    seen: list[str]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append(self.headers.get("Content-Type", ""))
        if self.status != 200:
            self.send_error(self.status, "TSA unavailable")
            return
        reply = self.authority.reply(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@contextlib.contextmanager
def serve(authority: Authority, *, status: int = 200) -> Iterator[tuple[str, list[str]]]:
    """``(url, content types seen)`` of an HTTP TSA on 127.0.0.1 answering with ``authority``."""
    handler = type("Handler", (_Handler,), {"authority": authority, "status": status, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsr", handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclasses.dataclass(frozen=True)
class Commitment:
    """A small signed commitment (no model needed) and the owner's public key."""

    path: Path
    pubkey: Path
    statement: dict


def write_commitment(d: Path, *, created: str = "2025-01-01T00:00:00Z") -> Commitment:
    """A valid signed commitment ``d/commitment.dsse.json`` by a new owner key ``d/owner``."""
    import hashlib
    import random

    from protocols import dsse, keys, openings, statements

    d.mkdir(parents=True, exist_ok=True)
    info = keys.generate_keypair(d / "owner")
    key = keys.load_private_key(info.private_path)
    rng = random.Random(0)
    core = {
        "secrets": [{"secret": rng.randbytes(32).hex(), "trigger": {"size": 8}} for _ in range(2)],
        "trigger_family": {"name": "targeted_patch", "parameters": {"min_size": 8}},
        "verification_set": {"reference": "builtin:mnist#test", "indices": [1, 2, 3]},
    }
    public, _ = openings.make_commitments(core, rng=random.Random(1))
    model = hashlib.sha256(b"protected model").hexdigest()
    predicate = {
        "schema_version": "1",
        "created": created,
        "tool": {"name": "mapguard", "version": "test"},
        "owner_key_fingerprint": info.fingerprint,
        "model": {"sha256": model, "name": "protected.pt", "format": "safetensors"},
        "method": {"name": "map-watermark", "parameters": {}},
        "trigger_family": core["trigger_family"],
        "commitments": public,
        "verification": {"n_secrets": 2, "null_keys_per_secret": 19, "queries_per_key": 3,
                         "test": "combined-rank"},
    }  # fmt: skip
    statement = statements.make_statement(
        subjects=[("protected.pt", model)],
        predicate_type=statements.COMMITMENT_PREDICATE_TYPE,
        predicate=predicate,
    )
    path = d / "commitment.dsse.json"
    dsse.write_envelope(path, statements.sign_statement(statement, key))
    return Commitment(path=path, pubkey=info.public_path, statement=statement)
