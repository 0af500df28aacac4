"""Private machinery of :mod:`verification.verify`: its inputs (``spec``), the queries and their
per-image reduction (``queries``), the procedure (``run``), the frozen result (``result``) and
the signed result document (``result_document``)."""
