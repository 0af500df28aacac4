"""The worked examples of docs/TRIGGERS.md, asserted exactly.

Each vector is checked three ways: against the library (``verification.triggers``), against a
plain-Python (``hmac``/``hashlib``) re-implementation written from the document's text, and
against the document itself (every asserted value, colour grid and blend map must appear in it
verbatim, and every file it names must exist), so that the document and the code cannot drift.
Provenance of the values: computed by this implementation at trigger-spec version 1.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from pathlib import Path

import numpy as np
import pytest

from protocols.analysis import claim_null_seed
from verification._triggers.hkdf import hkdf_sha256
from verification.triggers import get_trigger_family, null_secrets

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "TRIGGERS.md").read_text(encoding="utf-8")

COUNT = bytes(range(32))
ONES = b"\xff" * 32
EMBED = {"min_size": 8, "max_size": 10, "num_classes": 10}

# (family, params, secret, {stream slice: hex}, [u64 of S[0:8], S[8:16], S[16:24], target bytes],
#  details, colour grid of the patch, fingerprint)
PATCH_VECTORS = [
    (
        "patch",
        {},
        COUNT,
        {(0, 24): "f1d5778a2ce75c465f817288928fb6e57052cfe29d737124",
         (24, 38): "d56dbacb224bd160d17e00ca3574"},
        [17425965768522554438, 6881907636498839269, 8093760052549349668],
        {"size": 6, "row": 13, "col": 22},
        ["652666", "726262", "111364", "260321", "374003", "121527"],
        "sha256:1b52c04995642b62aa7554d864aa1517a559eb743694719da4f314749115e21f",
    ),
    (
        "targeted_patch",
        {},
        COUNT,
        {(0, 24): "a76b3c6468cdad58028ca5b095f537c95489b41cdee6c024",
         (24, 38): "aecd932bfd0d07e6f41ac73b4470",
         (38, 46): "09c03d278b2e511d"},
        [12063802428794711384, 183703862664050633, 6091598007087054884, 702628781917884701],
        {"size": 6, "row": 17, "col": 26, "target": 1},
        ["535466", "231277", "641501", "763364", "065434", "732107"],
        "sha256:3a3a32f3e5cf2e501a2f61db15ea40bde97de56344bc8b1ca929434362d1b742",
    ),
    (
        "targeted_patch",
        EMBED,
        COUNT,
        {(24, 62): "aecd932bfd0d07e6f41ac73b447009c03d278b2e511da32ea052b7dd8f8fe2dc2672f7c5908e",
         (62, 70): "c35c12a2d0669952"},
        [12063802428794711384, 183703862664050633, 6091598007087054884, 14077147025743714642],
        {"size": 10, "row": 8, "col": 4, "target": 2},
        ["5354662312", "7764150176", "3364065434", "7321070011", "6003644742",
         "6271210732", "1456500512", "6767307617", "7055604634", "5737054410"],
        "sha256:3c72577075ec912bdd853a18051d1bfd5b341498fbecce7e0268534020392ada",
    ),
    (
        "targeted_patch",
        {**EMBED, "margin": 3},
        ONES,
        {(0, 24): "896955ca752071dd2ec4352eec9f0f4f06d6ccfd8bc186eb",
         (62, 70): "d0a08db5b13b0378"},
        [9901539583787561437, 3369876896834588495, 492806598587156203, 15033171367664747384],
        {"size": 9, "row": 14, "col": 10, "target": 4},
        ["165401614", "346357774", "414713026", "530402144", "232342206",
         "512762544", "023257355", "453745574", "431570710"],
        "sha256:8c045e022d2d785f35fa1facddba9a54a647fea8c31e5312b2706adb682081f8",
    ),
]  # fmt: skip

BLEND_STREAM = {(0, 16): "4aca3a6ec5a55a7ad791bfee6f59188a", (1024, 1032): "ada13ee2a38a84c3"}
BLEND_DETAILS = {"support_pixels": 282}
BLEND_FINGERPRINT = "sha256:263a25826bd9799462b9cce52cf730654ff9656ea6309edc2efee83e8f84f11b"

COMMITMENT_DIGEST = "b13a389dcb5abf1de1d86087b669bcef6b12f3116b97b28f98df7a64dd755fcc"
CLAIM_NONCE = "arbiter-nonce-0001"
NULL_SEED = "e07d0c060cefeb7462935ece5e1b67fd82a4a1f878dedccfe490f8041e36494c"
NULL_KEYS = [
    "e333ebe5907fda34786adb11822482d98cd5c37a1a98c4537943dd9db06a2f59",
    "0434d689e0c1108558377e9209e78cfac146cbace6524b4d5831bd4b93cbe938",
    "3ee8580fab61beeb4d77a3c74df71f17d71477b3948c55cb31552e47a4a5f111",
]
NULL_KEY_0_DETAILS = {"size": 8, "row": 13, "col": 13, "target": 5}
NULL_KEY_0_FINGERPRINT = "sha256:bce21c426196cb52917590dde861ffff39bbd6bb851a0c2239a60737adfc479c"


# ------------------------------------------------------ plain-Python reading of docs/TRIGGERS.md
def ref_hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + block, i + 1
    return out[:length]


def ref_uniform(b: bytes, lo: int, hi: int) -> int:
    return lo + int.from_bytes(b, "big") % (hi - lo + 1)


def ref_bit(b: bytes, t: int) -> int:
    return (b[t // 8] >> (7 - t % 8)) & 1


def ref_fingerprint(a: np.ndarray, p: np.ndarray) -> str:
    return (
        "sha256:"
        + hashlib.sha256(a.astype("<f4").tobytes() + p.astype("<f4").tobytes()).hexdigest()
    )


def ref_patch(family: str, params: dict, secret: bytes):
    """Sections 2 and 4: (stream, A, P, details)."""
    n, lo, hi = params.get("image_size", 32), params.get("min_size", 4), params.get("max_size", 6)
    m, alpha = params.get("margin", 0), params.get("alpha", 1.0)
    lp = 24 + math.ceil(3 * hi * hi / 8)
    s = ref_hkdf(secret, f"mapguard/trigger/{family}/v1".encode(), lp + 8 * (family != "patch"))
    side = ref_uniform(s[0:8], lo, hi)
    r0, c0 = ref_uniform(s[8:16], m, n - side - m), ref_uniform(s[16:24], m, n - side - m)
    a, p = np.zeros((1, n, n), np.float32), np.zeros((3, n, n), np.float32)
    for r in range(side):
        for c in range(side):
            a[0, r0 + r, c0 + c] = alpha
            for ch in range(3):
                p[ch, r0 + r, c0 + c] = ref_bit(s[24:], 3 * (r * side + c) + ch)
    details = {"size": side, "row": r0, "col": c0}
    if family == "targeted_patch":
        target = params.get("target", -1)
        derived = ref_uniform(s[lp : lp + 8], 0, params.get("num_classes", 10) - 1)
        details["target"] = target if target >= 0 else derived
    return s, a, p, details


def ref_blend(secret: bytes, n: int = 32, density: float = 0.25, alpha: float = 0.15):
    """Section 3: (stream, A, P, details)."""
    s = ref_hkdf(secret, b"mapguard/trigger/blend/v1", n * n + math.ceil(3 * n * n / 8))
    threshold = round(density * 256)
    a, p = np.zeros((1, n, n), np.float32), np.zeros((3, n, n), np.float32)
    for r in range(n):
        for c in range(n):
            if s[r * n + c] < threshold:
                a[0, r, c] = alpha
                for ch in range(3):
                    p[ch, r, c] = ref_bit(s[n * n :], 3 * (r * n + c) + ch)
    return s, a, p, {"support_pixels": int((a > 0).sum())}


def colour_rows(a: np.ndarray, p: np.ndarray, rows: range, cols: range) -> list[str]:
    """The document's rendering: ``.`` off the support, else the digit ``4R + 2G + B``."""
    return [
        "".join(
            "." if a[0, r, c] == 0 else str(int(4 * p[0, r, c] + 2 * p[1, r, c] + p[2, r, c]))
            for c in cols
        )
        for r in rows
    ]


def in_doc(*values: object) -> None:
    for value in values:
        assert str(value) in DOC, f"{value!r} is not in docs/TRIGGERS.md"


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("vector", PATCH_VECTORS, ids=lambda v: f"{v[0]}-{sorted(v[1])}")
def test_patch_family_vectors(vector):
    family, params, secret, slices, u64s, details, grid, fingerprint = vector
    fam = get_trigger_family(family)
    trig = fam.derive(secret, params=params)
    stream = hkdf_sha256(secret, info=fam.info, length=fam.stream_length(fam.make_params(params)))
    for (lo, hi), value in slices.items():
        assert stream[lo:hi].hex() == value
    offsets = [0, 8, 16] + [24 + math.ceil(3 * params.get("max_size", 6) ** 2 / 8)]
    assert [int.from_bytes(stream[o : o + 8], "big") for o in offsets[: len(u64s)]] == u64s
    assert dict(trig.details) == details
    assert trig.fingerprint() == fingerprint
    a, p = trig.alpha_map.numpy(), trig.pattern.numpy()
    s, r, c = details["size"], details["row"], details["col"]
    assert colour_rows(a, p, range(r, r + s), range(c, c + s)) == grid
    assert int(trig.support.sum()) == s * s

    ref_stream, ref_a, ref_p, ref_details = ref_patch(family, params, secret)
    assert ref_stream == stream and ref_details == details
    np.testing.assert_array_equal(ref_a, a)
    np.testing.assert_array_equal(ref_p, p)
    assert ref_fingerprint(ref_a, ref_p) == fingerprint

    in_doc(secret.hex(), *slices.values(), *u64s, fingerprint, "\n".join(f"  {g}" for g in grid))
    in_doc(", ".join(f'"{k}": {v}' for k, v in details.items()))


def test_blend_vector():
    fam = get_trigger_family("blend")
    trig = fam.derive(COUNT)
    stream = hkdf_sha256(COUNT, info=fam.info, length=1408)
    for (lo, hi), value in BLEND_STREAM.items():
        assert stream[lo:hi].hex() == value
    assert dict(trig.details) == BLEND_DETAILS
    assert trig.fingerprint() == BLEND_FINGERPRINT
    a, p = trig.alpha_map.numpy(), trig.pattern.numpy()
    assert a.max() == np.float32(0.15) and np.float32(0.15).tobytes().hex() == "9a99193e"

    ref_stream, ref_a, ref_p, ref_details = ref_blend(COUNT)
    assert ref_stream == stream and ref_details == BLEND_DETAILS
    np.testing.assert_array_equal(ref_a, a)
    np.testing.assert_array_equal(ref_p, p)
    assert ref_fingerprint(ref_a, ref_p) == BLEND_FINGERPRINT

    # The document's full map is this trigger's, row for row.
    in_doc(*BLEND_STREAM.values(), BLEND_FINGERPRINT, '"support_pixels": 282', "9a 99 19 3e")
    in_doc("\n".join(colour_rows(a, p, range(32), range(32))))


def test_target_override_keeps_the_patch():
    fam = get_trigger_family("targeted_patch")
    derived, fixed = fam.derive(COUNT), fam.derive(COUNT, params={"target": 7})
    assert derived.details["target"] == 1 and fixed.details["target"] == 7
    assert fixed.fingerprint() == derived.fingerprint()


def test_null_seed_and_null_keys_vector():
    assert hashlib.sha256(b"example commitment").hexdigest() == COMMITMENT_DIGEST
    seed = claim_null_seed(commitment_digest=COMMITMENT_DIGEST, claim_nonce=CLAIM_NONCE)
    assert seed == NULL_SEED
    raw = b"\x00".join([b"mapguard/null-seed/v2", COMMITMENT_DIGEST.encode(), CLAIM_NONCE.encode()])
    assert hashlib.sha256(raw).hexdigest() == seed
    keys = null_secrets(seed.encode("utf-8"), 3)
    assert [k.hex() for k in keys] == NULL_KEYS
    for j, key in enumerate(keys):
        assert (
            ref_hkdf(seed.encode("ascii"), b"mapguard/null-key/v1" + j.to_bytes(4, "big"), 32)
            == key
        )
    trig = get_trigger_family("targeted_patch").derive(keys[0], params=EMBED)
    assert dict(trig.details) == NULL_KEY_0_DETAILS
    assert trig.fingerprint() == NULL_KEY_0_FINGERPRINT
    info_1 = (b"mapguard/null-key/v1" + (1).to_bytes(4, "big")).hex()
    in_doc(COMMITMENT_DIGEST, CLAIM_NONCE, NULL_SEED, *NULL_KEYS, NULL_KEY_0_FINGERPRINT, info_1)
    in_doc(", ".join(f'"{k}": {v}' for k, v in NULL_KEY_0_DETAILS.items()))


def test_doc_names_only_existing_files():
    paths = set(re.findall(r"`([\w./-]+\.(?:py|md))`", DOC))
    assert "verification/_triggers/targeted_patch.py" in paths
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, f"docs/TRIGGERS.md names files that do not exist: {missing}"
