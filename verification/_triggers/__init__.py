"""Private machinery of :mod:`verification.triggers`: the family base and registry (``base``),
the byte-stream vocabulary of the specs (``hkdf``), secret and null-key generation (``keys``) and
one module per built-in family (``patch``, ``blend``, ``targeted_patch``)."""
