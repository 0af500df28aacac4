"""Private machinery of :mod:`verification.backends`: the extension point and its wrappers
(``base``), in-process modules (``module``), suspect files detected by content (``files``) and the
isolated worker for code formats (``worker``, which runs the standalone script ``worker_main.py``
by path and never imports it)."""
