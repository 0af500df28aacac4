"""``export_program``: a plain-PyTorch archive with a bounded dynamic batch, written atomically."""

from __future__ import annotations

import pytest
import torch

from mapguard.export import MAX_EXPORT_BATCH, export_program
from mapguard.models import create_model
from protocols.errors import OutputExistsError


def test_export_runs_any_batch_in_range_and_refuses_to_overwrite(tmp_path) -> None:
    model = create_model("vgg_tiny").eval()
    path = export_program(model, tmp_path / "m.pt2")
    program = torch.export.load(str(path))
    bounds = [(int(r.lower), int(r.upper)) for r in program.range_constraints.values()]
    assert bounds == [(1, MAX_EXPORT_BATCH)]
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)
        assert program.module()(x[:1]).shape == (1, 10)
    with pytest.raises(OutputExistsError):
        export_program(model, path)
    assert export_program(model, path, force=True) == path


def test_export_at_the_models_input_size(model_64, tmp_path) -> None:
    path = export_program(model_64, tmp_path / "m64.pt2", input_size=(3, 64, 64))
    program = torch.export.load(str(path))
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model_64.eval()(x), atol=1e-4)
    with pytest.raises(Exception, match="64"):  # the archive fixed its image shape
        program.module()(torch.rand(3, 3, 32, 32))
