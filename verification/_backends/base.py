"""The query-backend extension point and its wrappers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from verification._errors import SuspectError

__all__ = ["LabelsOnly", "QueryBackend", "TransformedBackend"]

DEFAULT_INPUT_SHAPE = (3, 32, 32)
#: Images in the dummy batch of :meth:`QueryBackend.probe` (they count as queries).
PROBE_IMAGES = 2


class QueryBackend(ABC):
    """Black-box access to a suspect classifier; subclasses implement :meth:`predict`.

    Callers use :meth:`query`, which validates the batch and the answer and counts queries (one
    per image). Inputs are float32 ``[N, 3, H, W]`` in ``[0, 1]`` (the project's pixel
    convention); answers are probabilities ``[N, C]`` or, for label-only access, labels ``[N]``.

    Args:
        input_shape: Per-image input shape the suspect takes, e.g. ``(3, 32, 32)``.
        num_classes: Number of classes if known; discovered by :meth:`probe` otherwise.
        digest: Public identifier of the suspect (e.g. ``"sha256:<file digest>"``), or None.
        description: Human-readable origin, for reports.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE,
        num_classes: int | None = None,
        digest: str | None = None,
        description: str = "",
    ) -> None:
        self._input_shape = tuple(input_shape)
        self._num_classes = num_classes
        self._digest = digest
        self.description = description
        self._query_count = 0
        #: How the suspect is isolated from the verifier, in words (recorded in the result).
        self.isolation = "in-process (data only: no code from the suspect runs)"

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing
        """Release what the backend holds (a worker process, a connection); idempotent."""

    def __enter__(self) -> QueryBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Answer one batch: float probabilities ``[N, C]`` or integer labels ``[N]``."""

    @property
    def query_count(self) -> int:
        """Images sent to the suspect through :meth:`query` so far."""
        return self._query_count

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-image input shape."""
        return self._input_shape

    @property
    def num_classes(self) -> int | None:
        """Number of classes (None until known)."""
        return self._num_classes

    @property
    def digest(self) -> str | None:
        """Public identifier of the suspect, or None."""
        return self._digest

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """Validate ``batch``, call :meth:`predict`, validate and return its answer on the CPU."""
        self._check_batch(batch)
        out = self.predict(batch)
        out = self._check_answer(out, batch.shape[0])
        self._query_count += int(batch.shape[0])
        return out

    def probe(self, *, num_classes: int | None = None) -> None:
        """Send one dummy batch of two grey images; check the answer against ``num_classes``.

        Raises:
            SuspectError: The suspect fails on ``[2, *input_shape]`` inputs or answers with a
                different number of classes.
        """
        dummy = torch.full((PROBE_IMAGES, *self.input_shape), 0.5)
        try:
            out = self.query(dummy)
        except SuspectError:
            raise
        except Exception as exc:  # the suspect's own code failed: a user-facing problem
            lines = str(exc).strip().splitlines()
            msg = f"{type(exc).__name__}: {lines[0] if lines else ''}"
            raise SuspectError(
                f"suspect model fails on a {list(dummy.shape)} float input in [0, 1] ({msg})"
            ) from exc
        if out.dim() == 2:
            self._num_classes = int(out.shape[1])
        self._check_classes(out, num_classes)

    def _check_classes(self, out: torch.Tensor, num_classes: int | None) -> None:
        if num_classes is None:
            return
        if out.dim() == 2 and out.shape[1] != num_classes:
            raise SuspectError(
                f"suspect model outputs {out.shape[1]} classes, the watermark has {num_classes}"
            )
        if out.dim() == 1 and (out.min() < 0 or out.max() >= num_classes):
            raise SuspectError(
                f"suspect model answered label {int(out.max())} outside the watermark's "
                f"{num_classes} classes"
            )
        self._num_classes = num_classes

    def _check_batch(self, batch: torch.Tensor) -> None:
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
            raise SuspectError(f"query batch must be a float tensor, got {type(batch).__name__}")
        if batch.dim() != len(self.input_shape) + 1 or tuple(batch.shape[1:]) != self.input_shape:
            raise SuspectError(
                f"query batch must have shape [N, {', '.join(map(str, self.input_shape))}], "
                f"got {list(batch.shape)}"
            )

    @staticmethod
    def _check_answer(out: object, n: int) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise SuspectError(f"suspect answered {type(out).__name__}, expected a tensor")
        out = out.detach().cpu()
        if out.shape[:1] != (n,) or out.dim() not in (1, 2):
            raise SuspectError(f"suspect answered shape {list(out.shape)} for {n} images")
        if out.dim() == 1 and out.is_floating_point():
            raise SuspectError("suspect answered 1-D floats; expected labels or [N, C] scores")
        if out.dim() == 2 and not torch.isfinite(out).all():
            raise SuspectError("suspect answered non-finite scores")
        return out.long() if out.dim() == 1 else out


class _View(QueryBackend):
    """A view of ``backend``: same input shape, classes, digest and isolation; queries go to it."""

    def __init__(self, backend: QueryBackend, *, description: str) -> None:
        super().__init__(
            input_shape=backend.input_shape,
            num_classes=backend.num_classes,
            digest=backend.digest,
            description=description,
        )
        self.isolation = backend.isolation
        self.backend = backend


class TransformedBackend(_View):
    """Apply ``transform`` to every batch before querying ``backend`` (query-time attacks).

    Args:
        backend: The wrapped backend.
        transform: Pure function ``[N, 3, H, W] -> [N, 3, H, W]`` in pixel space.
        name: Label for reports.
    """

    def __init__(
        self,
        backend: QueryBackend,
        transform: Callable[[torch.Tensor], torch.Tensor],
        *,
        name: str = "transform",
    ) -> None:
        super().__init__(backend, description=f"{backend.description} + {name}")
        self.transform = transform

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        return self.backend.query(self.transform(batch))


class LabelsOnly(_View):
    """View of ``backend`` that answers only the top-1 label."""

    def __init__(self, backend: QueryBackend) -> None:
        super().__init__(backend, description=f"{backend.description} (labels only)")

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.backend.query(batch)
        return out.argmax(dim=1) if out.dim() == 2 else out
