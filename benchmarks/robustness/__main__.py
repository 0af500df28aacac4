"""``python -m benchmarks.robustness``."""

from benchmarks.robustness.cli import main

main()
