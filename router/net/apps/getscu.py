"""getscu: retrieve instances with C-GET and store each as a Part 10 file named by its SOP Instance UID.

The instances come back as C-STORE requests on the same association, so
every storage context must be proposed up front, with the SCP role for us:
the chosen C-GET model, then the common storage SOP classes in the
uncompressed syntaxes, as many as 128 contexts allow. An acceptor picks one
transfer syntax per context (Implicit VR Little Endian, usually), and an
instance goes unchanged only in a context of its own syntax: so the common
image SOP classes are also proposed in Explicit VR Little Endian, and in each
`-ts UID` (a compressed syntax, say), ahead of the rest. Received files are
written bit for bit.
"""

from __future__ import annotations

import argparse
import logging

from pydicom.uid import ExplicitVRLittleEndian

from router.net import evt, sop_class
from router.net.acse import MAX_CONTEXTS
from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT
from router.net.apps.common import add_model_options, add_query_options, build_identifier, client_parser
from router.net.apps.common import configure_timeouts, make_output_directory, retrieve_outcome, setup_logging
from router.net.apps.storescp import store_handler
from router.net.contexts import StoragePresentationContexts
from router.net.presentation import build_role
from router.net.status import Service
from router.net.values import validate_uid

LOGGER = logging.getLogger("router.net")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_QUERY = 2

GET_MODELS = {
    PATIENT_ROOT: sop_class.PatientRootQueryRetrieveInformationModelGet,
    STUDY_ROOT: sop_class.StudyRootQueryRetrieveInformationModelGet,
    PATIENT_STUDY_ONLY: sop_class.PatientStudyOnlyQueryRetrieveInformationModelGet,
}
IMAGE_SOP_CLASSES = (  # proposed in each extra syntax: 1 + 120 + 7 contexts fill an A-ASSOCIATE-RQ
    sop_class.CTImageStorage,
    sop_class.MRImageStorage,
    sop_class.SecondaryCaptureImageStorage,
    sop_class.UltrasoundImageStorage,
    sop_class.ComputedRadiographyImageStorage,
    sop_class.DigitalXRayImageStorageForPresentation,
    sop_class.DigitalMammographyXRayImageStorageForPresentation,
)
EXTRA_SYNTAXES = (ExplicitVRLittleEndian,)  # beside the usual contexts, which are accepted in Implicit VR


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = client_parser("getscu", "Retrieve DICOM instances from a peer with C-GET", "GETSCU")
    add_model_options(parser)
    add_query_options(parser)
    parser.add_argument("-od", "--output-directory", default=".", metavar="[d]irectory", help="write received instances to directory d")
    parser.add_argument("--ignore", action="store_true", help="receive the data but store nothing")
    parser.add_argument(
        "-ts", "--transfer-syntax", action="append", default=[], metavar="UID",
        help="also accept the common image SOP classes in this transfer syntax (repeatable)",
    )
    return parser.parse_args(argv)


def storage_contexts(extra_syntaxes: list[str], room: int) -> list[tuple[str, list[str]]]:
    """The storage contexts to propose: each extra syntax for the image classes, then the usual ones."""
    syntaxes = dict.fromkeys([*EXTRA_SYNTAXES, *extra_syntaxes])
    contexts = [(uid, [syntax]) for syntax in syntaxes for uid in IMAGE_SOP_CLASSES]
    contexts += [(context.abstract_syntax, list(context.transfer_syntax)) for context in StoragePresentationContexts]
    return contexts[:room]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    try:
        identifier = build_identifier(args.file, args.keyword)
        extra = [validate_uid(uid, "transfer syntax") for uid in args.transfer_syntax]
    except ValueError as exc:  # QueryKeyError included
        LOGGER.error(str(exc))
        return EXIT_BAD_QUERY
    if not make_output_directory(args.output_directory):
        return EXIT_FAILED
    ae = AE(args.calling_aet)
    configure_timeouts(ae, args)
    ae.spool_directory = args.output_directory  # large instances become their file by a rename
    model = GET_MODELS[args.model]
    ae.add_requested_context(model)
    contexts = storage_contexts(extra, MAX_CONTEXTS - 1)
    for uid, syntaxes in contexts:
        ae.add_requested_context(uid, syntaxes)
    roles = [build_role(uid, scp_role=True) for uid in dict.fromkeys(uid for uid, _ in contexts)]
    handlers = [(evt.EVT_C_STORE, store_handler(args.output_directory, args.ignore))]
    assoc = ae.associate(
        args.addr, args.port, ae_title=args.called_aet, max_pdu=args.max_pdu, ext_neg=roles, evt_handlers=handlers
    )
    if not assoc.is_established:
        return EXIT_FAILED
    try:
        succeeded = retrieve_outcome(assoc.send_c_get(identifier, model), Service.QR_GET)
    except ValueError as exc:  # no accepted context for the model, an identifier that cannot be encoded
        LOGGER.error(str(exc))
        succeeded = False
    finally:
        assoc.release()
    return EXIT_OK if succeeded else EXIT_FAILED


if __name__ == "__main__":
    exit_process(main())
