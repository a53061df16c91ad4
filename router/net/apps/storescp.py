"""storescp: receive C-STORE requests and store each instance as a Part 10 file.

Every storage SOP class is accepted in every transfer syntax, compressed ones
included; each instance is written bit for bit as received, named by its SOP
Instance UID, and large ones never pass through memory whole. A requestor that
proposes an Asynchronous Operations Window may keep up to 16 C-STOREs
outstanding (they are stored in order). With `--fork`, each association is
served in a child process of its own, as DCMTK's `storescp --fork`.
"""

from __future__ import annotations

import argparse
import logging
import os

from router.net import evt
from router.net.acceptor import allow_outstanding
from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import add_timeout_options, configure_timeouts, make_output_directory, serve
from router.net.apps.common import server_parser, setup_logging
from router.net.contexts import accept_all_storage
from router.net.presentation import VERIFICATION_SOP_CLASS
from router.net.status import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from router.net.values import uid_as_file_name

LOGGER = logging.getLogger("router.net")
EXIT_OK = 0
EXIT_FAILED = 1
FILE_SUFFIX = ".dcm"


STORE_PDU = 131072  # the default maximum PDU we announce (DCMTK's largest -pdu)
MAX_OUTSTANDING = 16  # C-STOREs a requestor may send ahead of the responses, if it asks to


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = server_parser("storescp", "Receive and store DICOM instances", "STORESCP")
    parser.add_argument("-od", "--output-directory", default=".", help="where to write the received files")
    parser.add_argument("--ignore", action="store_true", help="receive the data but store nothing")
    parser.add_argument(
        "-pm", "--promiscuous", action="store_true",
        help="also accept storage SOP classes the standard's list lacks: private ones and newer ones",
    )
    parser.add_argument(
        "--fork", action="store_true",
        help="serve each association in a process of its own, so that associations use every core (Linux)",
    )
    add_timeout_options(parser)
    # Large PDUs: each one costs the receiver the same Python work whatever its size.
    parser.set_defaults(max_pdu=STORE_PDU)
    return parser.parse_args(argv)


def store_handler(directory: str, ignore: bool):
    """The EVT_C_STORE handler: save as <SOP Instance UID>.dcm in `directory`."""

    prefix = os.path.join(directory, "")  # the folder with its separator: each path is one concatenation

    def handle_store(event: evt.Event) -> int:
        if ignore:
            return SUCCESS
        try:
            path = prefix + uid_as_file_name(event.request.affected_sop_instance_uid) + FILE_SUFFIX
        except ValueError as exc:  # e.g. '../x': never a path out of the folder
            LOGGER.error(f"Refusing an instance: {exc}")
            return CANNOT_UNDERSTAND
        try:
            event.save_as(path)
        except OSError as exc:
            LOGGER.error(f"Could not store {path}: {exc}")
            return OUT_OF_RESOURCES
        LOGGER.info("Stored %s", path)
        return SUCCESS

    return handle_store


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    if not make_output_directory(args.output_directory):
        return EXIT_FAILED
    ae, handlers = build_scp(args)
    served = serve(ae, (args.bind_address, args.port), evt_handlers=handlers, forking=args.fork)
    return EXIT_OK if served else EXIT_FAILED


def build_scp(args: argparse.Namespace) -> tuple[AE, list]:
    """The AE and the event handlers that storescp serves with."""
    ae = AE(args.ae_title)
    configure_timeouts(ae, args)
    ae.maximum_associations = args.max_associations
    ae.spool_directory = args.output_directory  # spooled instances are renamed, never copied
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    accept_all_storage(ae, unlisted=args.promiscuous)  # in the syntax the sender proposes first: stored as sent
    handlers = [
        (evt.EVT_C_STORE, store_handler(args.output_directory, args.ignore)),
        (evt.EVT_ASYNC_OPS, allow_outstanding(MAX_OUTSTANDING)),
    ]
    return ae, handlers


if __name__ == "__main__":
    exit_process(main())
