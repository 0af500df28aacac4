"""Write the offline ImageFolder benchmark (digits and photos at any resolution) from a shell.

Usage::

    python -m mapguard.data.make_benchmark OUT [--size 224] [--per-class 100] [--seed 0] [--force]

See :func:`mapguard.data.make_folder_benchmark` for what is written. A bad argument or an
existing ``OUT`` (without ``--force``) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from protocols.errors import InputError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mapguard.data.make_benchmark",
        description="Write digit and photo ImageFolder trees (PNG) made from installed packages.",
    )
    parser.add_argument("out", help="output folder (created)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (224)")
    parser.add_argument("--per-class", type=int, default=100, help="images per class (100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, write the benchmark, print where; 2 on a user error."""
    args = _parser().parse_args(argv)
    from mapguard.data._generate import make_folder_benchmark

    try:
        bench = make_folder_benchmark(
            args.out, size=args.size, per_class=args.per_class, seed=args.seed, force=args.force
        )
    except InputError as exc:
        print(f"make_benchmark: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {bench.root} ({bench.size}px, {bench.per_class} per class)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
