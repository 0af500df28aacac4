"""Benchmarks: experiments, not tests. Run each from the repository root as a module.

==================================================  ==============================================
``python -m benchmarks.authorization``              MAP vs NTL on ordered domain pairs
``python -m benchmarks.authorization_free``         SF-MAP and DF-MAP (no source data / no data)
``python -m benchmarks.authorization_attacks``      a MAP-protected model under removal attacks
``python -m benchmarks.domain_shift``               the source models on every domain
``python -m benchmarks.false_positives``            verification of the protected model and of
                                                    independent models (p-values, calibration)
``python -m benchmarks.robustness``                 the watermark under attacks and query-time
                                                    transforms; false positives; authorization
``python -m benchmarks.robustness_compare``         side-by-side table of robustness results
==================================================  ==============================================

Each uses the public APIs of ``mapguard``, ``verification`` and ``protocols`` only.
"""
