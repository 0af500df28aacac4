"""The arbiter side of mapguard: everything needed to verify a watermark, and nothing more.

It never imports ``mapguard``: a court expert can install and audit it alone. Public modules:

- :mod:`verification.triggers` — trigger families (secret -> deterministic image transformation)
- :mod:`verification.backends` — black-box query access to a suspect model (files, modules)
- :mod:`verification.stats` — exact rank tests and supplementary statistics
- :mod:`verification.verify` — ``verify(backend, spec, config) -> VerificationResult``, and the
  signed result document (``result_predicate``, ``write_result``)
- :mod:`verification.watermark_file` — the revealed owner's file (``owner.wm``) as a spec
- :mod:`verification.check` — check a signed commitment or result (and its watermark)
- :mod:`verification.transforms` — query-time input transformations a thief may apply
- :mod:`verification.timestamps` — RFC 3161 tokens on a commitment, checked with the user's TSA
  certificate, and whether the certified time predates the suspect

Example (the test in two steps: a secret's trigger, then its rank among null keys'):
    >>> import numpy as np
    >>> from verification import stats, triggers
    >>> secret = triggers.random_secret(np.random.default_rng(0))
    >>> triggers.get_trigger_family("patch").derive(secret).describe()["family"]
    'patch'
    >>> stats.rank_test(0.9, np.linspace(0.1, 0.3, 99)).pvalue
    0.01
"""

__all__ = [
    "backends",
    "check",
    "stats",
    "timestamps",
    "transforms",
    "triggers",
    "verify",
    "watermark_file",
]
