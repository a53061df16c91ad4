"""`python -m router`: the same command line as `router`."""

from router.cli import main

main()
