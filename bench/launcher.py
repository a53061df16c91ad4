"""Start a Python client app, import what it needs, then wait for a go before running it.

    python -m bench.launcher [--nodelay] MODULE ARGS...

MODULE is an app module: `router.net.apps.storescu`, or one of pynetdicom's
(`pynetdicom.apps.storescu.storescu`; `--nodelay` first patches pynetdicom to set
TCP_NODELAY, see bench/pynetdicom_peer.py). Once MODULE is imported the launcher
writes READY on stdout, then from there on sends its stdout to stderr, waits for a line
on stdin and runs MODULE as `python -m MODULE ARGS` does, to its exit (and exit
status). A benchmark so times the transfer alone, from the go to the exit: the
interpreter's start and the imports (~0.4 s each, more when several start at once on
two cores) are timed apart.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys

READY = "ready"
NODELAY = "--nodelay"


def main(argv: list[str]) -> int:
    nodelay = bool(argv) and argv[0] == NODELAY
    if nodelay:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if nodelay:
        from bench.pynetdicom_peer import force_nodelay

        force_nodelay()
    importlib.import_module(argv[0])
    print(READY, flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdin.readline()
    sys.argv = argv
    del sys.modules[argv[0]]  # imported above only to time its imports apart: run afresh, as `-m` does
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
