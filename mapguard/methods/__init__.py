"""Protection methods: turn (model, source data, target data) into a protected plain model.

Built-in methods: ``"map"`` (mask learning, :mod:`mapguard.methods.map`), ``"map-nft"`` (MAP
against a simulated fine-tuning thief), ``"nft-weights"`` (changes the weights: SOPHON-style,
:mod:`mapguard.methods.nft_weights`), ``"ntl"`` (the NTL baseline, :mod:`mapguard.methods.ntl`),
``"sf-map"`` and ``"df-map"`` (MAP without source data or without any data,
:mod:`mapguard.methods.free`). This package imports every built-in, so the
registry is complete whenever it is used. Adding a method is a single registration::

    @register_method("my-method", description="...")
    def my_method(inputs: MethodInputs) -> MethodOutput: ...

:func:`mapguard.protect.protect` loads the data, runs a method and writes its outputs.

Example:
    >>> sorted(list_methods())
    ['df-map', 'map', 'map-nft', 'nft-weights', 'ntl', 'sf-map']
    >>> get_method("map").learns_mask, get_method("df-map").needs_target
    (True, False)
"""

from mapguard.methods import free, map_nft, nft_weights, ntl
from mapguard.methods import map as map_method
from mapguard.methods._registry import (
    Method,
    MethodInputs,
    MethodOutput,
    get_method,
    list_methods,
    register_method,
)

#: The built-in methods (each registers itself where it is defined).
BUILTIN_METHODS = (map_method, map_nft, nft_weights, ntl, free)

__all__ = [
    "BUILTIN_METHODS",
    "Method",
    "MethodInputs",
    "MethodOutput",
    "get_method",
    "list_methods",
    "register_method",
]
