"""`python -m router.net APP [options]`: run one of the engine's command-line apps."""

from __future__ import annotations

import importlib
import sys

from router.net.apps.common import exit_process

APPS = ("echoscu", "echoscp", "storescu", "storescp", "qrscp", "findscu", "getscu", "movescu")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in APPS:
        print(f"usage: python -m router.net {{{','.join(APPS)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"router.net.apps.{argv[0]}")
    return module.main(argv[1:])


if __name__ == "__main__":
    exit_process(main())
