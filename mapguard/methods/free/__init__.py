"""SF-MAP and DF-MAP: learn a MAP mask without source data, or without any data.

* **SF-MAP** (source-free, :mod:`~mapguard.methods.free.sfmap`): the source data are replaced by
  a *pseudo-source* synthesised from the model itself (:mod:`mapguard.synthesis`). Keep terms on
  it: ``KL(original || masked)`` plus ``bn_weight *`` the BatchNorm-statistics distance; degrade
  term on the real target data.
* **DF-MAP** (data-free, :mod:`~mapguard.methods.free.dfmap`): no target either. The degrade
  images are *neighbour domains* of the pseudo-source, drawn fresh at every step from generic
  families (random convolutions, colour, texture, amplitude spectrum, AdaIN-style first-layer
  feature shifts; :func:`list_families`), labelled with the original model's prediction on the
  clean image.
* **Stopping without source data** (:class:`HeldOutKLStop`): after every epoch the
  temperature-``T`` KL between the original and the masked model on a *held-out* split of the
  pseudo-source is measured (and the masked model's accuracy on held-out degrade images); the
  returned mask is that of the last epoch whose held-out KL is ``<= stop_kl``. Learning stops at
  the first such epoch whose held-out degrade accuracy reaches ``degrade_goal``, or once
  ``patience`` epochs in a row exceed ``stop_kl``.
* **Boundary-aware keep set** (``boundary``, :class:`BoundaryKeep`): after every epoch, images
  where the original and the current masked model disagree are synthesised under the BN prior
  and the in-distribution-like ones join the keep pool (held by its own KL term with
  ``boundary_term``). **Estimated source drop** (:func:`estimate_drop`): with labelled targets
  the mask's *collateral* ``t * (t - a)`` (the original's and the masked model's accuracy on the
  held-out target probe), else the disagreement rate on a held-out boundary set, mapped to a
  drop with an interval; it is what the metrics report when no source data are given
  (``docs/METHOD-free.md``, sections 6-9 and 11).

Both register themselves as protection methods (``"sf-map"``, ``"df-map"``) with
``needs_source=False``: ``mapguard protect`` never reads the source's training split for them.
Formulas: ``docs/METHOD.md, section 2``.

Example:
    >>> import torch
    >>> from mapguard.masking import MaskConfig
    >>> from mapguard.models import create_model
    >>> from mapguard.synthesis import SynthesisConfig
    >>> model = create_model("vgg_tiny").eval()
    >>> cfg = FreeConfig(n_pseudo=20, steps_per_epoch=2,
    ...                  synthesis=SynthesisConfig(steps=2, batch_size=20))
    >>> out = data_free_mask(model, mask_config=MaskConfig(epochs=1, batch_size=8),
    ...                      config=cfg, cache=False, progress=False)
    >>> 0.0 <= out.mask.pruned_fraction <= 1.0 and len(out.held_out_kl) == 1
    True
"""

from mapguard.methods.free._boundary import BoundaryKeep
from mapguard.methods.free._config import (
    DEFAULT_FAMILIES,
    DF_DEFAULTS,
    DF_FREE_DEFAULTS,
    SF_DEFAULTS,
    SF_FREE_DEFAULTS,
    FreeConfig,
    FreeResult,
    split_options,
)
from mapguard.methods.free._estimate import CALIBRATION, boundary_probe, estimate_drop
from mapguard.methods.free._neighbours import (
    FeatureStyleShift,
    NeighbourFamily,
    create_family,
    list_families,
    neighbour_sets,
    register_family,
)
from mapguard.methods.free._sources import NeighbourSource, PseudoSource, mix_pairs
from mapguard.methods.free._stopping import DegradeProbe, HeldOutKLStop, masked_logits
from mapguard.methods.free.dfmap import data_free_mask
from mapguard.methods.free.sfmap import source_free_mask

__all__ = [
    "CALIBRATION",
    "DEFAULT_FAMILIES",
    "DF_DEFAULTS",
    "DF_FREE_DEFAULTS",
    "SF_DEFAULTS",
    "SF_FREE_DEFAULTS",
    "BoundaryKeep",
    "DegradeProbe",
    "FeatureStyleShift",
    "FreeConfig",
    "FreeResult",
    "HeldOutKLStop",
    "NeighbourFamily",
    "NeighbourSource",
    "PseudoSource",
    "boundary_probe",
    "create_family",
    "data_free_mask",
    "estimate_drop",
    "list_families",
    "masked_logits",
    "mix_pairs",
    "neighbour_sets",
    "register_family",
    "source_free_mask",
    "split_options",
]
