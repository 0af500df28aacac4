"""The robustness benchmark's watermark folder: keyed by the options that differ from the
defaults, so a new option at its default keeps the cache; any other value, or a changed default
under a cached folder, gets a folder of its own."""

from __future__ import annotations

import hashlib
import json

import pytest

from benchmarks.robustness.cache import REQUESTED, changed_options, watermark_folder
from benchmarks.robustness.plan import QUICK
from mapguard.watermark import EmbedConfig


@pytest.fixture(scope="module")
def configs():
    """(the quick budget's EmbedConfig dict, the default EmbedConfig dict)."""
    base = EmbedConfig()
    return base.replace(**QUICK.embed).to_dict(), base.to_dict()


def _with(d: dict, path: str, value) -> dict:  # noqa: ANN001
    """A deep copy of ``d`` with ``path`` ("a" or "mask.b") set to ``value``."""
    out = json.loads(json.dumps(d))
    head, _, name = path.partition(".")
    if name:
        out[head][name] = value
    else:
        out[head] = value
    return out


@pytest.mark.parametrize("path", ["brand_new_option", "mask.brand_new_option"])
def test_a_new_option_at_its_default_keeps_the_folder(configs, tmp_path, path):
    cfg, defaults = configs
    before = watermark_folder(tmp_path, cfg, defaults, 0)
    after = watermark_folder(tmp_path, _with(cfg, path, 0.25), _with(defaults, path, 0.25), 0)
    assert after == before


def _changed_value(value):  # noqa: ANN001, ANN202
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    return [*value, "x"] if isinstance(value, list) else "set"


def test_every_non_default_value_changes_the_folder(configs, tmp_path):
    cfg, defaults = configs
    folder = watermark_folder(tmp_path, cfg, defaults, 0)
    paths = [k for k, v in cfg.items() if not isinstance(v, dict)]
    paths += [f"mask.{k}" for k in cfg["mask"]]
    seen = {folder}
    for path in paths:
        head, _, name = path.partition(".")
        value = cfg[head][name] if name else cfg[head]
        other = watermark_folder(tmp_path, _with(cfg, path, _changed_value(value)), defaults, 0)
        assert other not in seen, path
        seen.add(other)
    assert watermark_folder(tmp_path, cfg, defaults, 1) not in seen  # the secret seed


def test_only_changed_options_are_kept(configs):
    cfg, defaults = configs
    assert changed_options(defaults, defaults) == {}
    diff = changed_options(cfg, defaults)
    assert diff == {k: cfg[k] for k in QUICK.embed if QUICK.embed[k] != defaults[k]}
    assert changed_options(_with(cfg, "mask.epochs", 3), cfg) == {"mask": {"epochs": 3}}


def test_a_changed_default_under_a_cached_folder_gets_its_own(configs, tmp_path):
    cfg, defaults = configs
    folder = watermark_folder(tmp_path, cfg, defaults, 0)
    folder.mkdir()
    (folder / REQUESTED).write_text(json.dumps(cfg))
    assert watermark_folder(tmp_path, cfg, defaults, 0) == folder  # the same recipe: reused
    # the library's default of mask.epochs moved (the request at the new default, same key)
    moved = _with(cfg, "mask.epochs", cfg["mask"]["epochs"] + 5)
    new_defaults = _with(defaults, "mask.epochs", cfg["mask"]["epochs"] + 5)
    other = watermark_folder(tmp_path, moved, new_defaults, 0)
    assert other != folder and other.name.startswith(folder.name + "-")


def test_a_folder_of_the_old_rule_is_moved_to_the_new_name(configs, tmp_path):
    cfg, defaults = configs
    old_tag = hashlib.sha256(
        json.dumps({"config": cfg, "secret_seed": 0}, sort_keys=True).encode()
    ).hexdigest()[:8]  # the rule of sessions 1-10: every option hashed
    legacy = tmp_path / f"wm-{old_tag}"
    legacy.mkdir()
    (legacy / "owner.wm").write_text("stand-in")
    folder = watermark_folder(tmp_path, cfg, defaults, 0)
    assert folder != legacy and not legacy.exists()
    assert (folder / "owner.wm").read_text() == "stand-in"
    assert json.loads((folder / REQUESTED).read_text()) == cfg


def test_each_recipe_is_its_owners_first_attempt(tiny_checkpoint, tiny_config, tmp_path):
    """Every watermark folder is embedded under its own owner key, so each recipe's commitment
    states attempt 1 (one shared key made the seventh recipe attempt 7); a folder embedded again
    after its removal is still counted, as attempt 2."""
    import dataclasses
    import shutil

    from benchmarks.robustness.cache import watermark
    from verification.watermark_file import read_watermark

    short = tiny_config(export=False).to_dict()
    mask = short.pop("mask") | {"epochs": 1, "max_steps_per_epoch": 1}
    budget = dataclasses.replace(QUICK, embed=short, embed_mask=mask, n_embed=200)

    def attempt_and_key(folder):  # noqa: ANN001, ANN202
        wm = read_watermark(folder / "owner.wm")
        return wm.analysis.attempt, wm.signer

    first = watermark(tmp_path, tiny_checkpoint, budget, {}, secret_seed=0)
    second = watermark(tmp_path, tiny_checkpoint, budget, {"mask.lr": 0.02}, secret_seed=0)
    (a1, key1), (a2, key2) = attempt_and_key(first), attempt_and_key(second)
    assert first != second and key1 != key2
    assert (a1, a2) == (1, 1)
    shutil.rmtree(first)
    again = watermark(tmp_path, tiny_checkpoint, budget, {}, secret_seed=0)
    assert again == first and attempt_and_key(again) == (2, key1)
