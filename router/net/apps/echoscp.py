"""echoscp: answer C-ECHO requests (Verification SCP) until interrupted."""

from __future__ import annotations

import argparse

from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import add_syntax_options, add_timeout_options, server_parser
from router.net.apps.common import chosen_syntaxes, configure_timeouts, serve, setup_logging
from router.net.presentation import VERIFICATION_SOP_CLASS

EXIT_OK = 0
EXIT_FAILED = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = server_parser("echoscp", "Answer C-ECHO requests from DICOM peers", "ECHOSCP")
    add_timeout_options(parser)
    add_syntax_options(parser, "accept")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    ae = AE(args.ae_title)
    configure_timeouts(ae, args)
    ae.maximum_associations = args.max_associations
    ae.add_supported_context(VERIFICATION_SOP_CLASS, chosen_syntaxes(args))
    return EXIT_OK if serve(ae, (args.bind_address, args.port)) else EXIT_FAILED


if __name__ == "__main__":
    exit_process(main())
