"""``mapguard embed``: a bad recipe option is refused before any work."""

from __future__ import annotations

from click.testing import CliRunner

from mapguard._cli import cli


def test_embed_rejects_a_bad_recipe_option_before_any_work(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", "--out", str(tmp_path / "o")]).exit_code == 0
    base = ["embed", str(tmp_path / "missing.pt"), "--data", "builtin:mnist",
            "--key", str(tmp_path / "o.key"), "--out", str(tmp_path / "wm")]  # fmt: skip
    for option, said in (
        ("mask.weight_noise=-1", "weight_noise"),
        ("mask.nonsense=1", "unknown mask option 'nonsense'"),
        ("sparkle=1", "unknown embed option(s): sparkle"),
        ("target_weight", "KEY=VALUE"),
    ):
        res = runner.invoke(cli, [*base, "-o", option])
        assert res.exit_code == 2, res.output
        assert said in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "wm").exists()
