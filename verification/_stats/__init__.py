"""Private machinery of :mod:`verification.stats`: exact rank tests (``rank``), the effect size
(``effect``), supplementary tail fits (``parametric``), fake-secret calibration (``calibration``)
and the input validation they share (``validation``)."""
