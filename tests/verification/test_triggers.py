"""Trigger families: determinism, byte-exact derivation (independent re-implementation, golden
values), locality/amplitude of the change, PSNR, registry and validation."""

from __future__ import annotations

import hashlib
import hmac
import math

import numpy as np
import pytest
import torch

from verification._errors import TriggerError
from verification._triggers import base as _trigger_base
from verification._triggers.hkdf import hkdf_sha256
from verification.triggers import (
    BlendParams,
    PatchParams,
    Trigger,
    TriggerFamily,
    get_trigger_family,
    list_trigger_families,
    null_secrets,
    psnr,
    random_secret,
    register_trigger_family,
)

SECRET = bytes(range(32))


# ---------------------------------------------------------------- independent re-implementation
def rfc5869_hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with hmac/hashlib only, salt absent (= 32 zero bytes)."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


def spec_uniform(chunk: bytes, lo: int, hi: int) -> int:
    return lo + int.from_bytes(chunk, "big") % (hi - lo + 1)


def spec_bit(stream: bytes, t: int) -> int:
    return (stream[t // 8] >> (7 - t % 8)) & 1


def reference_patch(secret: bytes, n: int, lo: int, hi: int, alpha: float):
    """docs/TRIGGERS.md, family 'patch', written from the text in plain Python."""
    s = rfc5869_hkdf_sha256(secret, b"mapguard/trigger/patch/v1", 24 + math.ceil(3 * hi * hi / 8))
    side = spec_uniform(s[0:8], lo, hi)
    row, col = spec_uniform(s[8:16], 0, n - side), spec_uniform(s[16:24], 0, n - side)
    a = np.zeros((1, n, n), np.float32)
    p = np.zeros((3, n, n), np.float32)
    for r in range(side):
        for c in range(side):
            a[0, row + r, col + c] = alpha
            for ch in range(3):
                p[ch, row + r, col + c] = spec_bit(s[24:], (r * side + c) * 3 + ch)
    return a, p


def reference_blend(secret: bytes, n: int, density: float, alpha: float):
    """docs/TRIGGERS.md, family 'blend', written from the text in plain Python."""
    length = n * n + math.ceil(3 * n * n / 8)
    s = rfc5869_hkdf_sha256(secret, b"mapguard/trigger/blend/v1", length)
    threshold = round(density * 256)
    a = np.zeros((1, n, n), np.float32)
    p = np.zeros((3, n, n), np.float32)
    for r in range(n):
        for c in range(n):
            if s[r * n + c] < threshold:
                a[0, r, c] = alpha
                for ch in range(3):
                    p[ch, r, c] = spec_bit(s[n * n :], (r * n + c) * 3 + ch)
    return a, p


def test_hkdf_matches_rfc5869_test_case_3():
    # RFC 5869, appendix A.3: SHA-256, IKM = 0x0b * 22, salt = info = empty, L = 42.
    okm = hkdf_sha256(bytes([0x0B] * 22), info=b"", length=42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert rfc5869_hkdf_sha256(bytes([0x0B] * 22), b"", 42) == okm


@pytest.mark.parametrize("seed", range(6))
def test_patch_matches_independent_reimplementation(seed):
    rng = np.random.default_rng(seed)
    secret = random_secret(rng)
    lo = int(rng.integers(1, 6))
    hi = int(rng.integers(lo, 9))
    alpha = float(rng.choice([1.0, 0.5]))
    trig = get_trigger_family("patch").derive(
        secret, params={"min_size": lo, "max_size": hi, "alpha": alpha}
    )
    a, p = reference_patch(secret, 32, lo, hi, alpha)
    np.testing.assert_array_equal(trig.alpha_map.numpy(), a)
    np.testing.assert_array_equal(trig.pattern.numpy(), p)


@pytest.mark.parametrize("density", [0.1, 0.25, 1.0])
def test_blend_matches_independent_reimplementation(density):
    secret = random_secret(np.random.default_rng(int(density * 100)))
    trig = get_trigger_family("blend").derive(secret, params={"density": density, "alpha": 0.2})
    a, p = reference_blend(secret, 32, density, 0.2)
    np.testing.assert_array_equal(trig.alpha_map.numpy(), a)
    np.testing.assert_array_equal(trig.pattern.numpy(), p)


# Golden values. Provenance: computed by this implementation at trigger-spec version 1 (and
# matching the plain-Python re-implementation above); they guard against silent changes of the
# derivation, which would make every committed watermark unverifiable.
GOLDEN = {
    "patch": (
        {"size": 6, "row": 13, "col": 22},
        "sha256:1b52c04995642b62aa7554d864aa1517a559eb743694719da4f314749115e21f",
    ),
    "blend": (
        {"support_pixels": 282},
        "sha256:263a25826bd9799462b9cce52cf730654ff9656ea6309edc2efee83e8f84f11b",
    ),
}
GOLDEN_NULL_KEYS = [
    "bc3915730730e1ac49d814d89d1595f7b89fa245a7ef9d731be6ae8c0447e2b4",
    "76a9ca7dd3c840d19fb634db8bd346eca5722bd8e59829b85b5518135d684aee",
]


@pytest.mark.parametrize("family", sorted(GOLDEN))
def test_golden_derivation(family):
    trig = get_trigger_family(family).derive(SECRET)
    details, fingerprint = GOLDEN[family]
    assert dict(trig.details) == details
    assert trig.fingerprint() == fingerprint


def test_golden_null_keys():
    keys = null_secrets(b"mapguard-test-seed", 2)
    assert [k.hex() for k in keys] == GOLDEN_NULL_KEYS
    for j, key in enumerate(keys):  # the documented formula, re-implemented
        info = b"mapguard/null-key/v1" + j.to_bytes(4, "big")
        assert rfc5869_hkdf_sha256(b"mapguard-test-seed", info, 32) == key


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("family", ["patch", "blend"])
def test_derivation_is_deterministic_and_key_dependent(family):
    fam = get_trigger_family(family)
    one, again = fam.derive(SECRET), fam.derive(bytearray(SECRET))
    other = fam.derive(bytes(31) + b"\x01")
    assert torch.equal(one.alpha_map, again.alpha_map) and torch.equal(one.pattern, again.pattern)
    assert one.fingerprint() == again.fingerprint() != other.fingerprint()


def test_patch_changes_only_the_patch_and_stamps_it_exactly():
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for seed in range(20):
        trig = get_trigger_family("patch").derive(random_secret(np.random.default_rng(seed)))
        out = trig.apply(x)
        d = trig.details
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[d["row"] : d["row"] + d["size"], d["col"] : d["col"] + d["size"]] = True
        assert 4 <= d["size"] <= 6
        assert torch.equal(trig.support, inside)
        assert torch.equal(out[..., ~inside], x[..., ~inside])  # bit-identical outside
        assert torch.equal(out[..., inside], trig.pattern[:, inside].expand(5, -1, -1))
        assert torch.equal(x, x.clone())  # input untouched (pure)


def test_patch_alpha_bounds_the_change():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    trig = get_trigger_family("patch").derive(SECRET, params=PatchParams(alpha=0.3))
    out = trig.apply(x)
    expected = 0.7 * x + 0.3 * trig.pattern
    inside = trig.support
    assert torch.allclose(out[..., inside], expected[..., inside], atol=1e-6)


def test_blend_has_bounded_amplitude_and_expected_density():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    fractions = []
    for seed in range(10):
        trig = get_trigger_family("blend").derive(random_secret(np.random.default_rng(seed)))
        out = trig.apply(x)
        assert float((out - x).abs().max()) <= 0.15 + 1e-6
        assert torch.equal(out[..., ~trig.support], x[..., ~trig.support])
        fractions.append(float(trig.support.float().mean()))
    # 10 * 1024 Bernoulli(0.25) pixels: s.d. of the mean ~0.0043
    assert abs(np.mean(fractions) - 0.25) < 0.02


def test_apply_preserves_dtype_and_device_and_validates_shape():
    trig = get_trigger_family("patch").derive(SECRET)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    assert trig.apply(x).dtype == torch.float64
    with pytest.raises(TriggerError, match=r"\[N, 3, 32, 32\], got \[2, 3, 28, 28\]"):
        trig.apply(torch.rand(2, 3, 28, 28))
    with pytest.raises(TriggerError, match="float tensor"):
        trig.apply(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_describe_is_json_safe_and_holds_no_secret():
    import json

    for family in list_trigger_families():
        desc = get_trigger_family(family).derive(SECRET).describe()
        text = json.dumps(desc, allow_nan=False)
        assert SECRET.hex() not in text
        assert desc["family"] == family and desc["fingerprint"].startswith("sha256:")


def test_psnr():
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x, x) == math.inf
    assert psnr(x, x + 0.1) == pytest.approx(20.0)
    clean = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    patch = psnr(clean, get_trigger_family("patch").derive(SECRET).apply(clean))
    blend = psnr(clean, get_trigger_family("blend").derive(SECRET).apply(clean))
    assert 12 < patch < 35 and 22 < blend < 45
    with pytest.raises(TriggerError, match="equal shapes"):
        psnr(x, torch.zeros(2, 3, 4, 5))


# ---------------------------------------------------------------- keys
def test_random_secret():
    assert random_secret(np.random.default_rng(5)) == random_secret(np.random.default_rng(5))
    a, b = random_secret(), random_secret()
    assert len(a) == len(b) == 32 and a != b
    with pytest.raises(TriggerError, match="numpy Generator"):
        random_secret(5)  # type: ignore[arg-type]


def test_null_secrets_are_reproducible_distinct_and_prefix_stable():
    keys = null_secrets(b"seed", 50)
    assert keys == null_secrets(b"seed", 50)
    assert len(set(keys)) == 50 and all(len(k) == 32 for k in keys)
    assert null_secrets(b"seed", 7) == keys[:7]
    assert null_secrets(b"seed2", 3) != keys[:3]
    assert null_secrets(b"seed", 0) == []
    with pytest.raises(TriggerError, match="non-empty bytes"):
        null_secrets(b"", 3)
    with pytest.raises(TriggerError, match="got -1"):
        null_secrets(b"seed", -1)


# ---------------------------------------------------------------- registry and validation
def test_unknown_family_lists_valid_ones():
    with pytest.raises(TriggerError, match=r"unknown trigger family 'pach'; choose one of: blend"):
        get_trigger_family("pach")
    assert {"patch", "blend"} <= set(list_trigger_families())


def test_register_custom_family(monkeypatch):
    monkeypatch.setattr(_trigger_base, "_REGISTRY", dict(_trigger_base._REGISTRY))

    @register_trigger_family
    class Corner(TriggerFamily):
        name = "corner_test_only"
        params_type = BlendParams

        def stream_length(self, params):
            return 1

        def layout(self, stream, params):
            n = params.image_size
            a = np.zeros((1, n, n), np.float32)
            a[0, 0, 0] = 1.0
            p = np.full((3, n, n), stream[0] / 255, np.float32)
            return a, p, {"value": stream[0]}

    trig = get_trigger_family("corner_test_only").derive(SECRET)
    assert isinstance(trig, Trigger) and trig.family == "corner_test_only"
    assert trig.details["value"] == rfc5869_hkdf_sha256(SECRET, Corner().info, 1)[0]
    with pytest.raises(TriggerError, match="already registered"):
        register_trigger_family(Corner)


@pytest.mark.parametrize(
    ("family", "params", "match"),
    [
        ("patch", {"min_size": 0}, r"min_size must be an integer in \[1, 32\], got 0"),
        ("patch", {"min_size": 5, "max_size": 4}, r"max_size .* got 4"),
        ("patch", {"alpha": 1.5}, r"alpha must be a number in \(0, 1\], got 1.5"),
        ("patch", {"size": 4}, r"unknown parameter\(s\) \['size'\]"),
        ("blend", {"density": 0}, r"density must be a number in \(0, 1\], got 0"),
        ("blend", {"image_size": 100}, r"image_size must be an integer in \[1, 77\], got 100"),
        ("blend", [1, 2], "must be a mapping"),
    ],
)
def test_bad_params_name_the_value(family, params, match):
    with pytest.raises(TriggerError, match=match):
        get_trigger_family(family).derive(SECRET, params=params)


@pytest.mark.parametrize("secret", [b"short", "a" * 32, bytes(33)])
def test_bad_secret(secret):
    with pytest.raises(TriggerError, match="a secret must be 32 bytes"):
        get_trigger_family("patch").derive(secret)
