"""``python -m cerberus.cli``."""

from cerberus.cli import main

main()
