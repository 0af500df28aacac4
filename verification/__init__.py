"""The arbiter side of mapguard: everything needed to verify a watermark, and nothing more.

It never imports ``mapguard``: a court expert can install and audit it alone. Public modules:

- :mod:`verification.triggers` — trigger families (secret -> deterministic image transformation)
- :mod:`verification.backends` — black-box query access to a suspect model (files, modules)
- :mod:`verification.stats` — exact rank tests and supplementary statistics
- :mod:`verification.verify` — ``verify(backend, spec, config) -> VerificationResult``

Example:
    >>> import numpy as np, torch
    >>> from verification.backends import ModuleBackend
    >>> from verification.triggers import random_secret
    >>> from verification.verify import VerifyConfig, WatermarkSpec, verify
    >>> rng = np.random.default_rng(0)
    >>> spec = WatermarkSpec(family="patch", secrets=(random_secret(rng),),
    ...                      images=rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8),
    ...                      labels=rng.integers(0, 10, 10), num_classes=10)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> verify(ModuleBackend(net), spec, VerifyConfig(null_keys_per_secret=9)).evidenced
    False
"""

__all__ = ["backends", "stats", "triggers", "verify"]
