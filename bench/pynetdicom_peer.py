"""The pynetdicom side of the benchmark, run as a separate script so pynetdicom never
loads into the engine's process (and the engine never loads into pynetdicom's).

    python bench/pynetdicom_peer.py scu HOST PORT --echoes N --assocs M --runs R [--nodelay]
        Times R runs of N C-ECHOs over one association (after a warm-up) and R runs of
        M associations (open + one C-ECHO + release), inside this process, and prints
        one JSON line: {"echo": [rates...], "assoc": [rates...], ...}.
    python bench/pynetdicom_peer.py scp [--nodelay] ECHOSCP-ARGS...
        Runs pynetdicom's own echoscp app (`python -m pynetdicom echoscp`), optionally
        with TCP_NODELAY forced on for every accepted socket.
    python bench/pynetdicom_peer.py app APP [--nodelay] APP-ARGS...
        Runs any of pynetdicom's apps (storescu, storescp, ...) the same way.

pynetdicom never sets TCP_NODELAY; `--nodelay` patches it in (client: the socket it
creates; server: every accepted socket) and is labelled as such by the benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import socket
import sys
import time

VERIFICATION = "1.2.840.10008.1.1"


def force_nodelay() -> None:
    """Monkeypatch pynetdicom so every socket it connects or accepts has TCP_NODELAY on."""
    from pynetdicom import transport

    create = transport.AssociationSocket._create_socket

    def _create_socket(self, address):
        sock = create(self, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    get_request = transport.AssociationServer.get_request

    def _get_request(self):
        client, address = get_request(self)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    transport.AssociationSocket._create_socket = _create_socket
    transport.AssociationServer.get_request = _get_request


def _ok(status) -> bool:
    return getattr(status, "Status", None) == 0


def scu(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pynetdicom_peer scu")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--echoes", type=int, required=True)
    parser.add_argument("--assocs", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--nodelay", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="pynetdicom SCU %(levelname)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if args.nodelay:
        force_nodelay()
    from pynetdicom import AE

    ae = AE(ae_title="BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(VERIFICATION)
    result = {"echo": [], "assoc": [], "echo_failures": 0, "assoc_failures": 0, "repeated_runs": 0, "errors": []}

    def echo_run() -> float:
        assoc = ae.associate(args.host, args.port)
        if not assoc.is_established:
            raise RuntimeError("the association for the round-trip run was not established")
        try:
            for _ in range(args.warmup):
                assoc.send_c_echo()
            failures = 0
            start = time.perf_counter()
            for _ in range(args.echoes):
                if not _ok(assoc.send_c_echo()):
                    failures += 1
            elapsed = time.perf_counter() - start
        finally:
            if assoc.is_established:
                assoc.release()
        result["echo_failures"] += failures
        return args.echoes / elapsed

    def assoc_run(count: int) -> float:
        failures = 0
        start = time.perf_counter()
        for _ in range(count):
            assoc = ae.associate(args.host, args.port)
            if assoc.is_established:
                if not _ok(assoc.send_c_echo()):
                    failures += 1
                assoc.release()
            else:
                failures += 1
        elapsed = time.perf_counter() - start
        result["assoc_failures"] += failures
        return count / elapsed

    def repeated(run, *run_args) -> float:
        """A run whose association is lost midway (a peer fault) is repeated, at most twice, and counted."""
        for attempt in range(3):
            try:
                return run(*run_args)
            except RuntimeError as exc:
                result["errors"].append(str(exc))
                if attempt == 2:
                    raise
                result["repeated_runs"] += 1
        raise AssertionError("unreachable")

    for _ in range(args.runs):
        result["echo"].append(repeated(echo_run))
    repeated(assoc_run, min(args.warmup, 5))
    for _ in range(args.runs):
        result["assoc"].append(repeated(assoc_run, args.assocs))

    print(json.dumps(result), flush=True)
    return 0


def app(name: str, argv: list[str]) -> int:
    """Run pynetdicom's app `name` (its `main`), with TCP_NODELAY forced on if `--nodelay` is in `argv`."""
    nodelay = "--nodelay" in argv
    argv = [a for a in argv if a != "--nodelay"]
    if nodelay:
        force_nodelay()
    module = importlib.import_module(f"pynetdicom.apps.{name}.{name}")
    module.main(argv)
    return 0


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "app":
        return app(sys.argv[2], sys.argv[3:])
    if len(sys.argv) < 2 or sys.argv[1] not in ("scu", "scp"):
        print(__doc__, file=sys.stderr)
        return 2
    return scu(sys.argv[2:]) if sys.argv[1] == "scu" else app("echoscp", sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
