"""``SynthesisConfig``: every option of pseudo-source synthesis, validated once, serialisable."""

from __future__ import annotations

from dataclasses import dataclass

from mapguard._config import ConfigMixin, check_int, check_number
from mapguard._errors import ConfigError

__all__ = ["SynthesisConfig"]


@dataclass(frozen=True, kw_only=True)
class SynthesisConfig(ConfigMixin, what="synthesis"):
    """Options of :func:`mapguard.synthesis.synthesize` (formulas in ``docs/METHOD.md, section 2``).

    Attributes:
        steps: Adam steps per batch of images.
        lr: Adam learning rate (cosine-annealed to 0) on the image logits.
        batch_size: images optimised together; BatchNorm statistics are matched per batch, so
            a batch should hold several images of every class.
        resolution: side of the optimised logit grid, bilinearly upscaled to the model's image
            side (32 = full resolution at the default side 32; at most the model's side).
        ce_weight: weight of the cross-entropy towards each image's assigned class.
        bn_weight: weight of the BatchNorm-statistics loss (ignored for models without BN).
        first_bn_scale: extra factor on the first BatchNorm layer's distance.
        tv_weight: weight of the squared total variation of the (full-side) image.
        l2_weight: weight of the mean squared pixel value (a dark-background prior).
        diversity_weight: weight of the within-class similarity penalty on penultimate features.
        jitter: maximum random shift (pixels) applied before every forward pass.
        init_level: mean grey level of the start images (shared across the 3 channels).
        init_noise: standard deviation (in logit units) of the shared-channel start noise.
    """

    steps: int = 400
    lr: float = 0.1
    batch_size: int = 100
    resolution: int = 16
    ce_weight: float = 1.0
    bn_weight: float = 1.0
    first_bn_scale: float = 5.0
    tv_weight: float = 1.0
    l2_weight: float = 0.0
    diversity_weight: float = 0.0
    jitter: int = 2
    init_level: float = 0.15
    init_noise: float = 0.5

    def __post_init__(self) -> None:
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)
        check_int("jitter", self.jitter, low=0)
        if self.resolution not in (4, 8, 16, 32):
            raise ConfigError(f"resolution must be one of 4, 8, 16, 32, got {self.resolution!r}")
        check_number("lr", self.lr, positive=True)
        for name in ("ce_weight", "bn_weight", "first_bn_scale", "tv_weight", "l2_weight"):
            check_number(name, getattr(self, name), positive=False)
        check_number("diversity_weight", self.diversity_weight, positive=False)
        check_number("init_noise", self.init_noise, positive=False)
        if not (isinstance(self.init_level, (int, float)) and 0.0 < self.init_level < 1.0):
            raise ConfigError(
                f"init_level must lie strictly between 0 and 1, got {self.init_level!r}"
            )
