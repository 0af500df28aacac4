"""Pseudo-source synthesis: recover training-like images from a trained classifier alone.

:func:`synthesize` inverts the model (DeepInversion-style, low-resolution parameterisation;
``docs/METHOD.md, section 2``); :func:`write_synthesis` stores a result with a picture grid (the
pseudo-source next to its neighbour domains, :func:`mapguard.methods.free.neighbour_sets`);
:func:`boundary_samples` synthesises images where a model and its masked copy disagree (SF-MAP /
DF-MAP's boundary-aware keep set); :func:`restyle` moves real (target) images towards the model's
BatchNorm statistics (SF-MAP's restyled keep set).

Example:
    >>> import torch
    >>> from mapguard.models import create_model
    >>> model = create_model("vgg_tiny").eval()
    >>> result = synthesize(model, n=10, config=SynthesisConfig(steps=2, batch_size=10),
    ...                     seed=0, cache=False, progress=False)
    >>> tuple(result.images.shape), result.images.dtype, sorted(result.labels.tolist())
    ((10, 3, 32, 32), torch.uint8, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
"""

from mapguard.synthesis._boundary import (
    boundary_samples,
    class_mixtures,
    js_divergence,
    sample_bn_scores,
)
from mapguard.synthesis._config import SynthesisConfig
from mapguard.synthesis._invert import bn_loss
from mapguard.synthesis._output import as_imageset, save_grid, synthesize_to_dir, write_synthesis
from mapguard.synthesis._restyle import restyle
from mapguard.synthesis._result import SynthesisResult, SynthesisStats, load_result, save_result
from mapguard.synthesis._synthesize import synthesize

__all__ = [
    "SynthesisConfig",
    "SynthesisResult",
    "SynthesisStats",
    "as_imageset",
    "bn_loss",
    "boundary_samples",
    "class_mixtures",
    "js_divergence",
    "load_result",
    "restyle",
    "sample_bn_scores",
    "save_grid",
    "save_result",
    "synthesize",
    "synthesize_to_dir",
    "write_synthesis",
]
