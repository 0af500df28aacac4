"""Where the report finds each value in the signed documents.

The core fields of ``result-predicate-v1`` and ``commitment-predicate-v1`` have fixed paths.
The extension fields (accuracies, null statistics, ...) live in the schema's open objects; each
is looked up at the listed paths in order (first: what ``mapguard verify`` writes today), so the
report keeps reading results written by older or newer producers. Paths are ``source:path``
(see :mod:`mapguard.report._cells`).
"""

from __future__ import annotations

__all__ = ["CALIBRATION", "PER_SECRET", "RESULT"]

#: Result fields, by meaning.
RESULT: dict[str, tuple[str, ...]] = {
    "clean_accuracy": (
        "result:negative_controls.clean_accuracy",
        "result:test.clean_accuracy",
    ),
    "null_triggered_accuracy": (
        "result:negative_controls.null_triggered_accuracy",
        "result:test.null_triggered_accuracy",
    ),
    "null_stats": (
        "result:negative_controls.null_stats",
        "result:test.null_stats",
    ),
    "null_summary": (
        "result:negative_controls.null_statistics",
        "result:negative_controls.null_summary",
    ),
    "pvalue_floor": ("result:test.pvalue_floor",),
    "parametric_pvalue": (
        "result:test.parametric_pvalue_supplementary",
        "result:test.parametric_pvalue",
    ),
    "statistic_definition": ("result:test.statistic_definition",),
    "null_seed": ("result:test.null_seed",),
    "null_keys_per_secret": ("result:test.null_keys_per_secret",),
    "n_secrets": ("result:test.n_secrets",),
    "family": ("result:test.trigger_family", "commitment:trigger_family.name"),
    "notes": ("result:test.notes",),
    "suspect_size": ("result:suspect.size", "result:suspect.size_bytes"),
    "controls_trials": (
        "result:negative_controls.fake_secrets.n",
        "result:negative_controls.n_trials",
    ),
    "controls_alphas": (
        "result:negative_controls.fake_secrets.alphas",
        "result:negative_controls.alphas",
    ),
    "controls_fraction": (
        "result:negative_controls.fake_secrets.exact_fraction",
        "result:negative_controls.exact_fraction",
    ),
    "controls_method": (
        "result:negative_controls.fake_secrets.method",
        "result:negative_controls.method",
    ),
    "command": ("result:test.command",),
    "environment": ("result:test.environment",),
}

#: Keys inside each ``result:test.per_secret[i]`` entry, by meaning.
PER_SECRET: dict[str, tuple[str, ...]] = {
    "statistic": ("statistic",),
    "rank": ("rank",),
    "null_keys": ("null_keys", "m"),
    "pvalue": ("pvalue",),
    "triggered_accuracy": ("triggered_accuracy",),
    "null_stats": ("null_stats", "null_statistics"),
    "fingerprint": ("trigger_fingerprint",),
}

#: Calibration figures of the protected (and original) model in the watermark file.
CALIBRATION: dict[str, tuple[str, ...]] = {
    "clean": ("watermark:calibration.clean_accuracy_after",),
    "secret": ("watermark:calibration.secret_trigger_accuracy",),
    "random": ("watermark:calibration.random_key_accuracy",),
    "original_clean": ("watermark:calibration.clean_accuracy_before",),
    "original_secret": (),
    "original_random": (),
    "model_size": ("commitment:model.size", "commitment:model.size_bytes"),
}
