"""``python -m mapguard``: the ``mapguard`` command line."""

from mapguard._cli import main

main()
