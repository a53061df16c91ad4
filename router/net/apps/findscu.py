"""findscu: send a C-FIND query to a Query/Retrieve or Modality Worklist SCP and print the matches.

Each match is printed as its response number and status, then its
identifier; `-w` also writes each identifier to rsp000001.dcm, rsp000002.dcm,
... in the current folder (a file that cannot be written ends the search).
The exit code is 0 when the search ends in Success.
"""

from __future__ import annotations

import argparse
import logging
from typing import Callable

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from router.net import sop_class
from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT, WORKLIST
from router.net.apps.common import add_model_options, add_query_options, associate_for, client_parser, query_identifier
from router.net.apps.common import describe_final, setup_logging
from router.net.received import build_file_meta
from router.net.status import SUCCESS, Service, StatusClass, classify, describe, service_of

LOGGER = logging.getLogger("router.net")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_QUERY = 2
RESPONSE_FILE = "rsp{:06d}.dcm"

FIND_MODELS = {
    PATIENT_ROOT: sop_class.PatientRootQueryRetrieveInformationModelFind,
    STUDY_ROOT: sop_class.StudyRootQueryRetrieveInformationModelFind,
    PATIENT_STUDY_ONLY: sop_class.PatientStudyOnlyQueryRetrieveInformationModelFind,
    WORKLIST: sop_class.ModalityWorklistInformationModelFind,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = client_parser("findscu", "Send a C-FIND query to a DICOM peer and print the matches", "FINDSCU")
    add_model_options(parser, worklist=True)
    add_query_options(parser)
    parser.add_argument("-w", "--write", action="store_true", help="write the responses to rsp000001.dcm, rsp000002.dcm, ...")
    return parser.parse_args(argv)


class ResponseFileError(Exception):
    """-w could not write a response file; the message names it."""


def write_response(identifier: Dataset, number: int, ae: AE, model: str) -> None:
    """Save a match as a Part 10 file whose meta names the query model, like pynetdicom's findscu."""
    identifier.file_meta = build_file_meta(
        model, generate_uid(), ExplicitVRLittleEndian, ae.implementation_class_uid, ae.implementation_version_name
    )
    path = RESPONSE_FILE.format(number)
    try:
        identifier.save_as(path, enforce_file_format=True)
    except OSError as exc:
        raise ResponseFileError(f"Cannot write the response file {path}: {exc.strerror or exc}") from exc


def print_matches(responses, service: Service, write: Callable[[Dataset, int], None] | None) -> Dataset | None:
    """Print each match (and `write(identifier, number)` it); return the final status, None if none came."""
    number = 0
    for status, identifier in responses:
        code = status.get("Status")
        if code is None:
            return None
        if classify(code) is not StatusClass.PENDING:
            return status
        number += 1
        print(f"Find Response {number}: {describe(code, service)}")
        print(identifier if identifier is not None else "(no identifier)", end="\n\n", flush=True)
        if write is not None and identifier is not None:
            write(identifier, number)
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    identifier = query_identifier(args)
    if identifier is None:
        return EXIT_BAD_QUERY
    model = FIND_MODELS[args.model]
    assoc = associate_for(args, model)
    if not assoc.is_established:
        return EXIT_FAILED
    service = service_of(model)
    write = (lambda match, number: write_response(match, number, assoc.ae, model)) if args.write else None
    try:
        final = print_matches(assoc.send_c_find(identifier, model), service, write)
    except ResponseFileError as exc:  # the peer answered, we could not keep the answer: the search ends here
        LOGGER.error(str(exc))
        return EXIT_FAILED
    except ValueError as exc:  # no accepted context, an identifier that cannot be encoded
        LOGGER.error(str(exc))
        final = None
    finally:
        assoc.release()
    if final is not None and final.Status == SUCCESS:
        return EXIT_OK
    LOGGER.error("Find failed: " + (describe_final(final, service) if final is not None else "no final response from the peer"))
    return EXIT_FAILED


if __name__ == "__main__":
    exit_process(main())
