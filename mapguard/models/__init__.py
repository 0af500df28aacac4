"""Model zoo: a registry of 32x32 image classifiers (timm-style).

Every model takes float images in ``[0, 1]`` of shape ``[N, 3, 32, 32]``; input normalisation is
the model's first module (:class:`Normalize`), so exported copies are self-contained. No weights
are ever downloaded.

Example:
    >>> from mapguard.models import create_model, list_models
    >>> "vgg_small" in list_models()
    True
    >>> model = create_model("vgg_small", num_classes=10)
    >>> model(__import__("torch").rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])

Models defined elsewhere are built from specs (no weights are downloaded):
``create_model("torchvision:resnet18", num_classes=10)``, ``"timm:NAME"`` (with
``pip install 'mapguard[timm]'``) or ``"module:pkg.mod:factory"`` (runs that code);
:func:`list_model_specs` lists the zoo and the library specs.
"""

from mapguard.models._registry import create_model, list_model_specs, list_models, register_model
from mapguard.models._zoo import DEFAULT_MEAN, DEFAULT_MODEL, DEFAULT_STD, Normalize

__all__ = [
    "DEFAULT_MEAN",
    "DEFAULT_MODEL",
    "DEFAULT_STD",
    "Normalize",
    "create_model",
    "list_model_specs",
    "list_models",
    "register_model",
]
