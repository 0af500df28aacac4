"""``embed`` streams folder data (issue 14 item 4): no folder split is held in memory, and the
outputs are those of the same images held in memory, with DataLoader workers or without
(``test_embed_distributed.py`` streams with none)."""

from __future__ import annotations

import json

import numpy as np

from mapguard.data import load_data
from mapguard.watermark import embed
from verification.watermark_file import read_watermark


def _run(checkpoint, data, owner, cfg, out, **kwargs):
    result = embed(checkpoint, data, owner.key(), cfg, out=out, progress=False, device="cpu",
                   secret_rng=np.random.default_rng(7), **kwargs)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    # the self-check's null keys come from the commitment's digest (fresh nonces, a time)
    for name in ("self_check", "not_ready", "ready"):
        metrics.pop(name)
    metrics["learning"].pop("seconds")  # wall time; images, epochs and steps must agree
    document = read_watermark(out / "owner.wm").document
    return result, metrics, {k: document[k] for k in ("secrets", "verification_set")}


def test_streamed_folder_gives_the_in_memory_watermark(
    tiny_checkpoint, digit_folders, owner, tmp_path, tiny_config, monkeypatch
):
    cfg = tiny_config(mask=tiny_config().mask.replace(epochs=2), export=False)
    folder = digit_folders["src"]
    held = tuple(load_data(folder, split=s, progress=False) for s in ("train", "test"))

    def refuse(*args, **kwargs):
        raise AssertionError("a folder split was loaded into memory")

    monkeypatch.setattr("mapguard.data._load.load_folder", refuse)
    streamed = _run(tiny_checkpoint, str(folder), owner, cfg, tmp_path / "s", workers=2)
    in_memory = _run(tiny_checkpoint, held, owner, cfg, tmp_path / "m")
    assert streamed[2]["secrets"] == in_memory[2]["secrets"]
    vs, vm = streamed[2]["verification_set"], in_memory[2]["verification_set"]
    assert list(vs["inline"]["shape"]) == [40, 3, 32, 32]
    # the same images, the reference aside ("<folder>#test" vs "<name>#test")
    assert vs["inline"] == vm["inline"] and vs["indices"] == vm["indices"]
    assert streamed[0].pruned_fraction > 0.001
    assert streamed[0].model_sha256 == in_memory[0].model_sha256
    assert streamed[1] == in_memory[1]  # every held-out figure
