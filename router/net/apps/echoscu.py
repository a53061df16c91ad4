"""echoscu: send C-ECHO requests to a peer (Verification SCU)."""

from __future__ import annotations

import argparse

from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import client_parser, configure_timeouts, parse_positive_int, setup_logging
from router.net.presentation import DEFAULT_TRANSFER_SYNTAXES, VERIFICATION_SOP_CLASS
from router.net.status import SUCCESS

EXIT_OK = 0
EXIT_FAILED = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = client_parser("echoscu", "Send C-ECHO requests to a DICOM peer", "ECHOSCU")
    parser.add_argument(
        "-pts", "--propose-ts", type=int, default=len(DEFAULT_TRANSFER_SYNTAXES), choices=range(1, len(DEFAULT_TRANSFER_SYNTAXES) + 1),
        metavar="[n]umber", help="propose the first n default transfer syntaxes",
    )
    parser.add_argument("--repeat", type=parse_positive_int, default=1, metavar="[n]umber", help="send n C-ECHO requests")
    parser.add_argument("--abort", action="store_true", help="abort the association instead of releasing it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    ae = AE(args.calling_aet)
    configure_timeouts(ae, args)
    ae.add_requested_context(VERIFICATION_SOP_CLASS, list(DEFAULT_TRANSFER_SYNTAXES[: args.propose_ts]))
    assoc = ae.associate(args.addr, args.port, ae_title=args.called_aet, max_pdu=args.max_pdu)
    if not assoc.is_established:
        return EXIT_FAILED
    ok = True
    for _ in range(args.repeat):
        status = assoc.send_c_echo()
        ok = ok and status.get("Status") == SUCCESS
    if args.abort:
        assoc.abort()
    else:
        assoc.release()
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    exit_process(main())
