"""Fixtures for mapguard.data: every built-in domain loaded once per session (seed 0).

The session-wide cache directory comes from ``tests/conftest.py`` (``$MAPGUARD_CACHE_DIR``).
"""

from __future__ import annotations

import pytest

from mapguard.data import ImageSet, list_domains, load_data


@pytest.fixture(scope="session")
def splits() -> dict[str, dict[str, ImageSet]]:
    """``splits[name][split]`` for every built-in domain and split train/test/all, seed 0."""
    return {
        name: {
            split: load_data(f"builtin:{name}", split=split, progress=False)
            for split in ("train", "test", "all")
        }
        for name in list_domains()
    }
