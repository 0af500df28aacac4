"""Bounded inputs: an endless file, an oversized file or a watermark claiming absurd counts is
refused at once with one line on stderr and exit 2, never a hang.

The CLI runs in a subprocess with a timeout, so that a regression fails instead of hanging.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mapguard._errors import ConfigError
from protocols.errors import InputError
from verification._errors import VerificationError
from verification.verify import (
    MAX_IMAGES_PER_KEY,
    MAX_NULL_KEYS_PER_SECRET,
    MAX_SECRETS,
    VerifyConfig,
    WatermarkSpec,
)
from verification.watermark_file import (
    MAX_FILE_BYTES,
    open_watermark,
    read_watermark,
    seal_watermark,
)

DEV_ZERO = Path("/dev/zero")
needs_dev_zero = pytest.mark.skipif(not DEV_ZERO.exists(), reason="needs /dev/zero")


def _mapguard(*args: object, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from mapguard._cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - start


def _assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("mapguard: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _crafted(embedded, tmp_path: Path, **verification) -> Path:
    """owner.wm with its ``verification`` counts changed, validly re-signed."""
    doc = read_watermark(embedded.file("owner.wm")).plain()
    doc["verification"].update(verification)
    path = tmp_path / "crafted.wm"
    path.write_bytes(seal_watermark(doc, embedded.owner.key()))
    return path


@needs_dev_zero
@pytest.mark.parametrize("where", ["check FILE", "check --watermark", "verify --watermark"])
def test_dev_zero_is_refused_in_one_line(embedded, tmp_path, where):
    commitment, pub = embedded.file("commitment.dsse.json"), embedded.owner.public
    args = {
        "check FILE": ("check", DEV_ZERO, "--pubkey", pub),
        "check --watermark": ("check", commitment, "--pubkey", pub, "--watermark", DEV_ZERO),
        "verify --watermark": (
            "verify",
            embedded.file("protected.pt"),
            "--watermark",
            DEV_ZERO,
            "--out",
            tmp_path / "r.json",
        ),
    }[where]
    done, seconds = _mapguard(*args)
    _assert_one_line_error(done, "'/dev/zero' is not a regular file")
    assert seconds < 30 and not (tmp_path / "r.json").exists()


def test_watermark_claiming_ten_million_null_keys_is_refused(embedded, tmp_path):
    crafted = _crafted(embedded, tmp_path, null_keys_per_secret=10**7)
    with pytest.raises(VerificationError, match="null_keys_per_secret must be at most 10,000"):
        read_watermark(crafted)
    out = tmp_path / "r.json"
    done, seconds = _mapguard(
        "verify", embedded.file("protected.pt"), "--watermark", crafted, "--out", out
    )
    _assert_one_line_error(done, "verification.null_keys_per_secret", "got 10000000")
    assert seconds < 30 and not out.exists()


def test_null_keys_option_beyond_the_limit_is_refused(embedded, tmp_path):
    out = tmp_path / "r.json"
    done, seconds = _mapguard(
        "verify",
        embedded.file("protected.pt"),
        "--watermark",
        embedded.file("owner.wm"),
        "--exploratory",
        "--null-keys",
        100_000_000,
        "--out",
        out,
    )
    _assert_one_line_error(done, "null_keys_per_secret must be at most", "got 100000000")
    assert seconds < 30 and not out.exists()


def test_count_limits_of_the_watermark_file(embedded, tmp_path):
    with pytest.raises(VerificationError, match=r"verification.n_secrets .* got 1000"):
        read_watermark(_crafted(embedded, tmp_path, n_secrets=1000))
    with pytest.raises(VerificationError, match=r"verification.queries_per_key .* got 100000"):
        read_watermark(_crafted(embedded, tmp_path, queries_per_key=100_000))
    doc = read_watermark(embedded.file("owner.wm")).plain()
    doc["secrets"] = doc["secrets"] * 22  # 66 entries
    data = seal_watermark(doc, embedded.owner.key())
    with pytest.raises(VerificationError, match="number of secrets in the watermark file .* 66"):
        open_watermark(data)


def test_watermark_file_size_limit_has_ten_times_headroom(embedded, tmp_path):
    # the fixture embeds 3 secrets and 40 verification images, as the demo does
    size = embedded.file("owner.wm").stat().st_size
    assert 10 * size <= MAX_FILE_BYTES, size
    big = tmp_path / "big.wm"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(InputError, match=f"watermark file .* limit is {MAX_FILE_BYTES:,} bytes"):
        read_watermark(big)
    with pytest.raises(InputError, match="too large"):
        open_watermark(b" " * (MAX_FILE_BYTES + 1))


def test_verify_config_and_spec_limits(embedded):
    with pytest.raises(VerificationError, match=f"got {MAX_NULL_KEYS_PER_SECRET + 1}$"):
        VerifyConfig(null_keys_per_secret=MAX_NULL_KEYS_PER_SECRET + 1)
    with pytest.raises(VerificationError, match=f"n_query_images .* got {10**6}"):
        VerifyConfig(n_query_images=10**6)
    VerifyConfig(null_keys_per_secret=MAX_NULL_KEYS_PER_SECRET, n_query_images=MAX_IMAGES_PER_KEY)
    rng = np.random.default_rng(0)
    secrets = tuple(rng.bytes(32) for _ in range(MAX_SECRETS + 1))
    with pytest.raises(VerificationError, match=f"number of secrets .* got {MAX_SECRETS + 1}"):
        WatermarkSpec(
            family="patch",
            secrets=secrets,
            images=np.zeros((2, 3, 32, 32), dtype=np.uint8),
            labels=np.array([0, 1]),
            num_classes=10,
        )


def test_embed_config_stays_within_what_a_verifier_accepts():
    from mapguard.watermark import EmbedConfig

    for field, value in (
        ("null_keys_per_secret", MAX_NULL_KEYS_PER_SECRET + 1),
        ("n_secrets", MAX_SECRETS + 1),
        ("n_verification", MAX_IMAGES_PER_KEY + 1),
    ):
        with pytest.raises(ConfigError, match=f"{field} must be at most .* got {value}"):
            EmbedConfig(**{field: value})
