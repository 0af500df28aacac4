"""Fixtures for the protocols tests: the committed TEST key pair and fresh throwaway keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import keys

DATA = Path(__file__).resolve().parents[1] / "data" / "protocols"
TEST_PASSPHRASE = b"mapguard-test-passphrase"  # see tests/data/protocols/regenerate.py


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def golden_passphrase() -> bytes:
    return TEST_PASSPHRASE


@pytest.fixture(scope="session")
def golden_private_key() -> Ed25519PrivateKey:
    return keys.load_private_key(DATA / "test_ed25519.key")


@pytest.fixture(scope="session")
def golden_public_key():
    return keys.load_public_key(DATA / "test_ed25519.pub")


@pytest.fixture
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def other_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()
