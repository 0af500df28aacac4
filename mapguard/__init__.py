"""mapguard: restrict a trained classifier to its authorized domains and prove ownership of it.

Owner-side toolkit: offline data domains (:mod:`mapguard.data`), a model zoo
(:mod:`mapguard.models`), safe checkpoints (:mod:`mapguard.checkpoint`), the MAP mask learner
(:mod:`mapguard.masking`) and watermark embedding. The arbiter side lives in the separate
``verification`` package, the shared formats in ``protocols``.

Example:
    >>> import mapguard
    >>> isinstance(mapguard.__version__, str)
    True
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mapguard")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
