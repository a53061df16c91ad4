"""What every app shares: logging levels (-q/-v/-d), network and transfer syntax options."""

from __future__ import annotations

import argparse
import logging

from router.net.log import LOGGER, debug_logger
from router.net.presentation import (
    DEFAULT_TRANSFER_SYNTAXES,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

DEFAULT_PDU = 16382


def add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="quiet mode, print no warnings and errors")
    group.add_argument("-v", "--verbose", action="store_true", help="verbose mode, print processing details")
    group.add_argument("-d", "--debug", action="store_true", help="debug mode, print debug information")


def server_parser(prog: str, description: str, ae_title: str) -> argparse.ArgumentParser:
    """A parser with what every SCP app takes: the port, -q/-v/-d, -aet, -ba, the association limit."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("port", type=int, help="TCP/IP port to listen on")
    add_output_options(parser)
    parser.add_argument("-aet", "--ae-title", default=ae_title, help="our AE title")
    parser.add_argument("-ba", "--bind-address", default="", help="address to listen on (default: all)")
    parser.add_argument("--max-associations", type=int, default=10, help="associations served at once")
    return parser


def add_timeout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-to", "--connection-timeout", type=float, metavar="[s]econds", help="timeout for connection requests")
    parser.add_argument("-ta", "--acse-timeout", type=float, default=30.0, metavar="[s]econds", help="timeout for ACSE messages")
    parser.add_argument("-td", "--dimse-timeout", type=float, default=30.0, metavar="[s]econds", help="timeout for DIMSE messages")
    parser.add_argument("-tn", "--network-timeout", type=float, default=30.0, metavar="[s]econds", help="timeout for the network")
    parser.add_argument("-pdu", "--max-pdu", type=int, default=DEFAULT_PDU, metavar="[n]umber of bytes", help="maximum PDU size to receive, 0 = unlimited")


def add_syntax_options(parser: argparse.ArgumentParser, verb: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-xe", "--little", dest="syntax", action="store_const", const=EXPLICIT_VR_LITTLE_ENDIAN, help=f"{verb} explicit VR little endian only")
    group.add_argument("-xb", "--big", dest="syntax", action="store_const", const=EXPLICIT_VR_BIG_ENDIAN, help=f"{verb} explicit VR big endian only")
    group.add_argument("-xi", "--implicit", dest="syntax", action="store_const", const=IMPLICIT_VR_LITTLE_ENDIAN, help=f"{verb} implicit VR little endian only")


def chosen_syntaxes(args: argparse.Namespace) -> list[str]:
    return [args.syntax] if args.syntax else list(DEFAULT_TRANSFER_SYNTAXES)


def setup_logging(args: argparse.Namespace) -> logging.Logger:
    """Errors only by default; -v adds information, -d everything, -q nothing."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s: %(message)s"))
    LOGGER.handlers = [handler]
    LOGGER.setLevel(logging.ERROR)
    if args.quiet:
        LOGGER.setLevel(logging.CRITICAL + 1)
    elif args.verbose:
        LOGGER.setLevel(logging.INFO)
    elif args.debug:
        debug_logger()
        LOGGER.handlers = [h for h in LOGGER.handlers if h is not handler]
    return LOGGER


def configure_timeouts(ae, args: argparse.Namespace) -> None:
    ae.acse_timeout = args.acse_timeout
    ae.dimse_timeout = args.dimse_timeout
    ae.network_timeout = args.network_timeout
    ae.connection_timeout = args.connection_timeout
    ae.maximum_pdu_size = args.max_pdu
