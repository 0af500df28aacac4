"""Imports every command module so each registers itself on :data:`mapguard._cli.cli`."""

from mapguard import (
    _cli_attack,  # noqa: F401
    _cli_demo,  # noqa: F401
    _cli_models,  # noqa: F401
    _cli_protect,  # noqa: F401
    _cli_report,  # noqa: F401
    _cli_synthesize,  # noqa: F401
    _cli_watermark,  # noqa: F401
)
