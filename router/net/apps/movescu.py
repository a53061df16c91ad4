"""movescu: ask a Query/Retrieve SCP to send instances to a move destination with C-MOVE.

With `--store` the app is its own destination: it starts a storage SCP
(titled `--store-aet`, on `--store-port`, every storage SOP class in every
transfer syntax) that writes what arrives bit for bit into `-od`, named by
SOP Instance UID, and stops it once the move has ended. The SCP must know
the destination's title (`-aem`) and where it listens.
"""

from __future__ import annotations

import argparse
import logging

from router.net import evt, sop_class
from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT
from router.net.apps.common import add_model_options, add_query_options, associate_for, client_parser, query_identifier
from router.net.apps.common import cannot_listen, configure_timeouts, make_output_directory, parse_ae_title, parse_port
from router.net.apps.common import retrieve_outcome, setup_logging
from router.net.apps.storescp import store_handler
from router.net.contexts import accept_all_storage
from router.net.server import AssociationServer
from router.net.status import Service

LOGGER = logging.getLogger("router.net")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_QUERY = 2
DEFAULT_STORE_PORT = 11113
DEFAULT_STORE_AET = "STORESCP"
ALL_INTERFACES = ""  # where the storage SCP listens
DRAIN_TIMEOUT = 10.0  # seconds the storage SCP gives the SCP's association to end after the move

MOVE_MODELS = {
    PATIENT_ROOT: sop_class.PatientRootQueryRetrieveInformationModelMove,
    STUDY_ROOT: sop_class.StudyRootQueryRetrieveInformationModelMove,
    PATIENT_STUDY_ONLY: sop_class.PatientStudyOnlyQueryRetrieveInformationModelMove,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = client_parser("movescu", "Move DICOM instances from a peer to a destination with C-MOVE", "MOVESCU")
    parser.add_argument("-aem", "--move-aet", type=parse_ae_title, default=DEFAULT_STORE_AET, help=f"the move destination's AE title (default: {DEFAULT_STORE_AET})")
    add_model_options(parser)
    add_query_options(parser)
    store = parser.add_argument_group("Storage SCP options")
    store.add_argument("--store", action="store_true", help="start a storage SCP to be the move destination")
    store.add_argument("--store-port", type=parse_port, default=DEFAULT_STORE_PORT, metavar="[p]ort", help=f"its port (default: {DEFAULT_STORE_PORT})")
    store.add_argument("--store-aet", type=parse_ae_title, default=DEFAULT_STORE_AET, metavar="[a]etitle", help=f"its AE title (default: {DEFAULT_STORE_AET})")
    store.add_argument("-od", "--output-directory", default=".", metavar="[d]irectory", help="write received instances to directory d")
    store.add_argument("--ignore", action="store_true", help="receive the data but store nothing")
    return parser.parse_args(argv)


def start_storage_scp(args: argparse.Namespace) -> AssociationServer:
    """Our storage SCP for the moved instances, listening on every interface (OSError if it cannot)."""
    ae = AE(args.store_aet)
    configure_timeouts(ae, args)
    ae.spool_directory = args.output_directory
    ae.add_supported_context(sop_class.Verification)
    accept_all_storage(ae)
    handlers = [(evt.EVT_C_STORE, store_handler(args.output_directory, args.ignore))]
    return ae.start_server((ALL_INTERFACES, args.store_port), block=False, evt_handlers=handlers)


def move(args: argparse.Namespace, identifier) -> bool:
    """Request the association and the C-MOVE; True if the move ended in Success."""
    model = MOVE_MODELS[args.model]
    assoc = associate_for(args, model)
    if not assoc.is_established:
        return False
    try:
        return retrieve_outcome(assoc.send_c_move(identifier, args.move_aet, model), Service.QR_MOVE)
    except ValueError as exc:  # no accepted context, an identifier that cannot be encoded
        LOGGER.error(str(exc))
        return False
    finally:
        assoc.release()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    identifier = query_identifier(args)
    if identifier is None:
        return EXIT_BAD_QUERY
    server = None
    if args.store:
        if not make_output_directory(args.output_directory):
            return EXIT_FAILED
        try:
            server = start_storage_scp(args)
        except OSError as exc:
            LOGGER.error(f"--store: {cannot_listen((ALL_INTERFACES, args.store_port), exc)}")
            return EXIT_FAILED
    try:
        succeeded = move(args, identifier)
    finally:
        if server is not None:
            server.drain(DRAIN_TIMEOUT)
    return EXIT_OK if succeeded else EXIT_FAILED


if __name__ == "__main__":
    exit_process(main())
