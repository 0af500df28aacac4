"""The arbiter's forgery audit: evidence a claimant selected after seeing an innocent model is
caught; a real watermark is not; the audit decides the verdict only without an established time
order; the CLI runs it and refuses too few keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mapguard._cli import cli
from verification.backends import ModuleBackend
from verification.forgery import audit_seed, forgery_audit
from verification.triggers import get_trigger_family, null_secrets, random_secret
from verification.verify import VerifyConfig, WatermarkSpec, verify
from verification.watermark_file import read_watermark, watermark_spec


@pytest.fixture(scope="module")
def forged(tiny_model, mnist_small, tiny_config):
    """An innocent model, the 3 best of 300 random keys scored on it (the tests' short recipe:
    8-10 px patches), committed with floor 0 (the claimant writes the whole commitment)."""
    test = mnist_small[1]
    images, labels = test.images[:40].numpy(), test.labels[:40].numpy()
    rng = np.random.default_rng(0)
    candidates = [random_secret(rng) for _ in range(300)]
    probe = WatermarkSpec(family="targeted_patch", family_params=tiny_config().family_params(10),
                          secrets=(candidates[0],), images=images, labels=labels,
                          num_classes=10)  # fmt: skip
    scores = _scores(tiny_model, probe, candidates)
    spec = _with(probe, tuple(candidates[i] for i in np.argsort(-scores)[:3]))
    return spec, verify(ModuleBackend(tiny_model.eval()), spec, _cfg(0.0)), scores


def _with(spec: WatermarkSpec, secrets: tuple[bytes, ...]) -> WatermarkSpec:
    return WatermarkSpec(family=spec.family, family_params=spec.family_params, secrets=secrets,
                         images=spec.images, labels=spec.labels, num_classes=10)  # fmt: skip


def _cfg(floor: float) -> VerifyConfig:
    return VerifyConfig(null_keys_per_secret=19, labels_only=True, null_seed="cd" * 16,
                        test="pooled-rank-sum", effect_floor=floor, floor_statistic="median",
                        parametric_model=None, n_resamples=100)  # fmt: skip


def _scores(model, spec: WatermarkSpec, keys: list[bytes]) -> np.ndarray:  # noqa: ANN001
    import torch

    from verification._verify.queries import query_triggers

    family = get_trigger_family(spec.family)
    triggers = [family.derive(k, params=spec.family_params) for k in keys]
    x = torch.from_numpy(spec.images).float().div(255.0)
    out = query_triggers(ModuleBackend(model.eval()), x, torch.from_numpy(spec.labels), triggers,
                         batch_size=512, labels_only=True)  # fmt: skip
    return out.contributions.mean(axis=1)


def test_selected_keys_pass_the_exact_test_and_the_audit_catches_them(forged, tiny_model):
    spec, result, scores = forged
    assert result.evidenced and result.pvalue <= 1e-3  # the test alone is fooled
    audit = forgery_audit(ModuleBackend(tiny_model.eval()), spec, result, n_keys=1200)
    assert audit.forgeable and audit.audit_value >= audit.secrets_value > 0
    assert audit.keys_reaching >= 3
    assert audit.queries == 40 * (1 + 1200)
    assert "could have selected" in audit.sentence
    # a claimant needs about 2 of 3 keys at the secrets' median: 2 x 1,200 / keys reaching
    assert audit.keys_needed == 2
    assert audit.estimated_draws == pytest.approx(2 * 1200 / audit.keys_reaching)


def test_too_few_audit_keys_do_not_reach_strong_selection(forged, tiny_model):
    """The audit excludes claimants who drew about as many keys as it did, not stronger ones:
    with 30 audit keys (a tenth of the claimant's 300) the same evidence passes."""
    spec, result, _ = forged
    audit = forgery_audit(ModuleBackend(tiny_model.eval()), spec, result, n_keys=30)
    assert not audit.forgeable and "excluded" in audit.sentence


def test_a_real_watermark_passes_the_audit(embedded):
    from mapguard.checkpoint import load_checkpoint

    wm = read_watermark(embedded.file("owner.wm"))
    spec = watermark_spec(wm)
    model = load_checkpoint(embedded.file("protected.pt"))[0].eval()
    cfg = VerifyConfig.from_analysis(wm.analysis, null_seed="ef" * 16, gives_probabilities=False)
    result = verify(ModuleBackend(model), spec, cfg)
    assert result.evidenced
    audit = forgery_audit(ModuleBackend(model), spec, result, n_keys=600)
    # not one of 600 random keys reaches the secrets' median (the short recipe's 8-10 px patches
    # have a natural effect: the best 3 reach about half of it)
    assert not audit.forgeable and audit.keys_reaching == 0 and audit.estimated_draws is None


def test_audit_keys_come_from_the_null_seed_and_are_not_the_null_keys(forged, tiny_model):
    spec, result, _ = forged
    seed = audit_seed(result.null_seed)
    assert seed != result.null_seed.encode() and len(seed) == 32
    audit_keys = set(null_secrets(seed, 50))
    null_keys = set(null_secrets(result.null_seed.encode("utf-8"), 60))
    assert not audit_keys & null_keys
    a = forgery_audit(ModuleBackend(tiny_model.eval()), spec, result, n_keys=50)
    b = forgery_audit(ModuleBackend(tiny_model.eval()), spec, result, n_keys=50)
    assert np.array_equal(a.key_stats, b.key_stats) and a.seed == seed.hex()


def _verify_cli(embedded, tmp_path, *extra):  # noqa: ANN001, ANN202
    out = tmp_path / "r.json"
    args = [str(embedded.file("protected.pt")), "--watermark", str(embedded.file("owner.wm")),
            "--claim-nonce", "audit-claim", "--out", str(out), *map(str, extra)]  # fmt: skip
    return CliRunner().invoke(cli, ["verify", *args]), out


def test_cli_runs_the_audit_and_records_it(embedded, tmp_path):
    res, out = _verify_cli(embedded, tmp_path, "--forgery-audit", 200)
    assert res.exit_code == 0, res.output
    assert "forgery      the best 3 of 200 random keys" in res.output
    block = json.loads(out.read_text())["forgery_audit"]
    assert block["counted"] and not block["forgeable"] and block["n_keys"] == 200


def test_cli_audits_a_file_by_default_with_the_secrets_classes(embedded, tmp_path):
    from mapguard.watermark._verify import AUDIT_KEYS

    res, out = _verify_cli(embedded, tmp_path)
    assert res.exit_code == 0, res.output
    block = json.loads(out.read_text())["forgery_audit"]
    assert block["n_keys"] == AUDIT_KEYS == 1000 and block["match_classes"]
    assert block["queries"] == 40 * (1 + AUDIT_KEYS)


def test_cli_without_the_audit_says_so(embedded, tmp_path):
    res, out = _verify_cli(embedded, tmp_path, "--forgery-audit", 0)
    assert res.exit_code == 0, res.output
    assert "forgery      not audited" in res.output
    assert "forgery_audit" not in json.loads(out.read_text())


def test_cli_refuses_fewer_audit_keys_than_secrets(embedded, tmp_path):
    res, out = _verify_cli(embedded, tmp_path, "--forgery-audit", 2)
    assert res.exit_code == 2 and "at least 3 keys" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_a_counted_forgeable_audit_makes_the_verdict_not_evidenced(embedded, tmp_path):
    """The verdict rule of the result document: forgeable and counted -> not_evidenced; recorded
    only (time order established) -> the test's verdict stands."""
    from verification._verify.result_document import _evidenced

    res = type("R", (), {"evidenced": True})()
    audit = {"forgeable": True, "counted": True}
    assert not _evidenced(res, None, audit)
    assert _evidenced(res, None, {**audit, "counted": False})
    assert _evidenced(res, None, {**audit, "forgeable": False})
    assert not _evidenced(res, {"evidenced": True}, audit)


def test_check_accepts_the_audit_and_refuses_an_inconsistent_one(embedded, tmp_path):
    """``mapguard check`` (verification.check) accepts a signed result with its audit; the audit
    block must follow from its own values, its null seed, its time order and the verdict."""
    from verification.check import check
    from verification.forgery import check_audit

    res, out = _verify_cli(embedded, tmp_path, "--forgery-audit", 100, "--key",
                           embedded.owner.private)  # fmt: skip
    assert res.exit_code == 0, res.output
    report = check(out, embedded.owner.public, embedded.file("owner.wm"))
    assert report.ok and any("forgery audit (100 keys) passes" in i.detail for i in report.items)
    predicate = json.loads(out.read_text())
    predicate = json.loads(__import__("base64").b64decode(predicate["payload"]))["predicate"]
    assert check_audit(predicate).startswith("; forgery audit")
    audit = predicate["forgery_audit"]
    mutations = {
        "counted against its condition": {**audit, "counted": False},
        "does not follow from its values": {**audit, "forgeable": True},
        "not the claim's audit keys": {**audit, "seed": "0" * 64},
    }
    for message, block in mutations.items():
        with pytest.raises(Exception, match=message):
            check_audit({**predicate, "forgery_audit": block})
    vetoed = {**audit, "forgeable": True, "audit_value": audit["secrets_value"]}
    with pytest.raises(Exception, match="counted audit vetoes it"):
        check_audit({**predicate, "forgery_audit": vetoed})
    assert check_audit({**predicate, "forgery_audit": vetoed, "verdict": "not_evidenced"})


def test_class_matched_audit_keys_are_the_seeds_keys_of_the_secrets_classes(forged):
    from verification.forgery import audit_triggers

    spec, result, _ = forged
    seed = audit_seed(result.null_seed)
    family = get_trigger_family(spec.family)
    classes = {family.derive(s, params=spec.family_params).details["target"] for s in spec.secrets}
    every = audit_triggers(spec, seed, 400, match_classes=False)
    matched = audit_triggers(spec, seed, 100, match_classes=True)
    assert len(matched) == 100 and {t.details["target"] for t in matched} <= classes
    in_order = [t for t in every if t.details["target"] in classes]
    assert [t.details for t in in_order] == [t.details for t in matched[: len(in_order)]]


def test_class_matched_audit_catches_the_forgery_with_fewer_keys(forged, tiny_model):
    """The claimant's keys share a class set; auditing that set finds as strong keys with a
    fraction of the queries."""
    spec, result, _ = forged
    backend = ModuleBackend(tiny_model.eval())
    matched = forgery_audit(backend, spec, result, n_keys=400, match_classes=True)
    assert matched.forgeable and matched.match_classes
    assert matched.audit_value >= forgery_audit(backend, spec, result, n_keys=400).audit_value
