"""Imports every command module so each registers itself on :data:`mapguard._cli.cli`."""

from mapguard import _cli_models  # noqa: F401
