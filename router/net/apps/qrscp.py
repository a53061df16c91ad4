"""qrscp: a Verification, Storage and Query/Retrieve SCP over a folder of DICOM files.

`python -m router.net qrscp -c config.ini` reads pynetdicom's qrscp layout
(`qr_config`: our settings, then a section per move destination);
command-line options override the file.

At start the files under `instance_location` are indexed (`qr_index`).
C-STOREd instances are written there bit for bit as `<SOP Instance UID>.dcm`
and indexed. C-FIND, C-GET and C-MOVE serve the Patient Root, Study Root and
Patient/Study Only models at every level they define; retrievals stream the
stored files as they are, each checked again first (`InstanceIndex.check_sendable`):
a file cut short, changed or gone since it was indexed is not sent, its
sub-operation fails with the reason logged, and its SOP Instance UID is in the
final response's Failed SOP Instance UID List.

The association to a move destination waits at most `destination_timeout`
(10 s unless configured) for each of its answers, and to connect (unless -to
says otherwise), so a destination that never answers fails the retrieve (0xA702,
every sub-operation failed) before the requester's own timeout (30 s by
default for each response) ends its wait.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
from typing import Iterator

from pydicom.dataset import Dataset

from router.net import evt, sop_class
from router.net.ae import AE
from router.net.apps.common import exit_process
from router.net.apps.common import add_output_options, add_timeout_options, parse_ae_title, parse_port, parse_seconds
from router.net.apps.common import serve, setup_logging
from router.net.apps.qr_config import OVERRIDABLE, ConfigError, QRConfig, load_config
from router.net.apps.qr_index import InstanceIndex, NotIndexable, StoredInstance
from router.net.apps.qr_model import MODELS, IdentifierError, Query
from router.net.apps.qr_model import find_query, find_response, retrieve_query
from router.net.apps.storescp import FILE_SUFFIX
from router.net.contexts import accept_all_storage
from router.net.services.sub_operations import Unsendable
from router.net.status import CANCEL, CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS, OUT_OF_RESOURCES
from router.net.status import MAX_ERROR_COMMENT, PENDING, PENDING_WARNING, SUCCESS
from router.net.values import uid_as_file_name

LOGGER = logging.getLogger("router.net")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
QR_SOP_CLASSES = tuple(MODELS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qrscp", description="A Verification, Storage and Query/Retrieve SCP")
    add_output_options(parser)
    parser.add_argument("-c", "--config", metavar="[f]ilename", help="use configuration file f (default: built-in settings)")
    parser.add_argument("--port", type=parse_port, help="override the configured TCP/IP listen port")
    parser.add_argument("-aet", "--ae-title", type=parse_ae_title, help="override the configured AE title")
    parser.add_argument("-ba", "--bind-address", help="override the configured address to listen on")
    parser.add_argument("--database-location", metavar="[f]ile", help="override the configured index database")
    parser.add_argument("--instance-location", metavar="[d]irectory", help="override the configured instance folder")
    parser.add_argument(
        "--destination-timeout", type=parse_seconds, metavar="[s]econds",
        help="override the configured destination_timeout: how long to wait for each answer of a move destination, "
        "and to connect to it unless -to is given (default 10: below the 30 s a C-MOVE requester waits by default, "
        "so it hears of the failure)",
    )
    parser.add_argument(
        "--clean", action="store_true",
        help="delete every instance the index holds, and its entries, then exit (asks to type 'yes' first)",
    )
    add_timeout_options(parser)
    parser.set_defaults(acse_timeout=None, dimse_timeout=None, network_timeout=None, max_pdu=None)  # the file decides
    return parser.parse_args(argv)


# ---- the service -------------------------------------------------------------------------------
class QueryRetrieveService:
    """The event handlers of qrscp, over one index."""

    def __init__(self, config: QRConfig, index: InstanceIndex) -> None:
        self.config = config
        self.index = index

    def handlers(self) -> list[tuple]:
        return [
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_C_MOVE, self.on_move),
        ]

    def on_store(self, event: evt.Event) -> int:
        """Write the instance as received into the instance folder and index it."""
        uid = event.request.affected_sop_instance_uid
        try:
            path = os.path.join(self.index.folder, uid_as_file_name(uid) + FILE_SUFFIX)
        except ValueError as exc:
            LOGGER.error(f"Refusing an instance: {exc}")
            return CANNOT_UNDERSTAND
        try:
            event.save_as(path)
        except OSError as exc:
            LOGGER.error(f"Could not store {path}: {exc}")
            return OUT_OF_RESOURCES
        try:
            self.index.add_file(path)
        except NotIndexable as exc:
            LOGGER.error(f"Refusing {uid}: {exc}")
            os.unlink(path)
            return CANNOT_UNDERSTAND
        LOGGER.info(f"Stored and indexed {path}")
        return SUCCESS

    def on_find(self, event: evt.Event) -> Iterator[tuple[int, object]]:
        """Yield each matching entity's identifier: 0xFF01 when some requested keys are not supported."""
        try:
            query = self._query(event, find_query, "C-FIND")
            matches = self.index.find(query)
        except IdentifierError as exc:
            yield _invalid_identifier("C-FIND", exc), None
            return
        status = PENDING_WARNING if query.unsupported else PENDING
        for entity in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            response = find_response(query, entity)
            response.RetrieveAETitle = self.config.ae_title
            yield status, response

    def on_get(self, event: evt.Event) -> Iterator:
        """The number of instances to send, then each one's file."""
        instances = self._retrieve(event, "C-GET")
        if isinstance(instances, Dataset):
            yield instances, None  # in place of the count: the retrieve ends at once
            return
        yield from self._sub_operations(event, instances)

    def on_move(self, event: evt.Event) -> Iterator:
        """Where the move destination listens, then the number of instances, then each one's file."""
        title = str(event.move_destination).strip()
        destination = self.config.destinations.get(title)
        if destination is None:
            yield None, None  # the engine answers 0xA801 (move destination unknown)
            return
        bound_waits = [(evt.EVT_CONN_OPEN, self._bound_destination_waits)]
        yield destination.address, destination.port, {"evt_handlers": bound_waits}
        instances = self._retrieve(event, "C-MOVE")
        if isinstance(instances, Dataset):
            yield instances, None
            return
        yield from self._sub_operations(event, instances)

    def _bound_destination_waits(self, event: evt.Event) -> None:
        """On an association to a move destination, once connected: wait at most the destination
        timeout for its association answer, each C-STORE response and its release."""
        event.assoc.acse_timeout = event.assoc.dimse_timeout = self.config.destination_timeout

    def _sub_operations(self, event: evt.Event, instances: list[StoredInstance]) -> Iterator:
        """The count, then each instance's file: the engine streams it, or encodes it anew in the
        uncompressed syntax a peer accepted instead of the file's own."""
        yield len(instances)
        for instance in instances:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, self._sendable(instance)

    def _sendable(self, instance: StoredInstance) -> str | Unsendable:
        """The file of `instance` if it still holds the instance indexed, whole; else why not."""
        try:
            self.index.check_sendable(instance)
        except NotIndexable as exc:
            return Unsendable(instance.sop_instance_uid, f"{instance.path}: {exc}")
        return instance.path

    def _retrieve(self, event: evt.Event, service: str) -> list[StoredInstance] | Dataset:
        """The instances a C-GET/C-MOVE asks for; the failure status if its identifier is invalid."""
        try:
            return self.index.retrieve(self._query(event, retrieve_query, service))
        except IdentifierError as exc:
            return _invalid_identifier(service, exc)

    def _query(self, event: evt.Event, parse, service: str) -> Query:
        identifier = event.identifier
        if self.config.log_identifier and LOGGER.isEnabledFor(logging.INFO):
            LOGGER.info(f"{service} request identifier:\n{identifier}")
        return parse(identifier, MODELS[event.request.affected_sop_class_uid])


def _invalid_identifier(service: str, error: IdentifierError) -> Dataset:
    """The failure status (0xA900) for a request whose identifier does not fit its model, with
    the reason as its Error Comment for the requester (logged here too)."""
    LOGGER.error(f"Invalid {service} identifier: {error}")
    status = Dataset()
    status.Status = DOES_NOT_MATCH_SOP_CLASS
    status.ErrorComment = str(error)[:MAX_ERROR_COMMENT]
    return status


# ---- the app ---------------------------------------------------------------------------------------
def build_ae(config: QRConfig) -> AE:
    """An AE that serves Verification, every Storage SOP class in every transfer syntax, and Q/R."""
    ae = AE(config.ae_title)
    ae.maximum_pdu_size = config.max_pdu
    ae.acse_timeout = config.acse_timeout
    ae.dimse_timeout = config.dimse_timeout
    ae.network_timeout = config.network_timeout
    ae.connection_timeout = config.destination_timeout  # only C-MOVE connects: to its destination
    ae.maximum_associations = config.maximum_associations
    ae.spool_directory = config.instance_location  # large receptions become their file by a rename
    ae.add_supported_context(sop_class.Verification)
    accept_all_storage(ae, scu_role=True, scp_role=True)  # scp_role: a C-GET requestor receives our C-STOREs
    for uid in QR_SOP_CLASSES:
        ae.add_supported_context(uid)
    return ae


def open_index(config: QRConfig) -> InstanceIndex:
    """The index of the instance folder, brought up to date."""
    os.makedirs(config.instance_location, exist_ok=True)
    index = InstanceIndex(config.database_location, config.instance_location)
    summary = index.scan()
    LOGGER.info(
        f"{len(index)} instances in {config.instance_location}: {summary.indexed} indexed, "
        f"{summary.unchanged} unchanged, {len(summary.skipped)} skipped, {summary.removed} removed"
    )
    return index


def clean(index: InstanceIndex, config: QRConfig) -> int:
    """--clean: once the user typed 'yes', delete the indexed instances and their entries."""
    try:
        answer = input(
            f"This deletes the {len(index)} instances indexed in {config.instance_location} and their "
            "entries. Type 'yes' to go on: "
        )
    except EOFError:
        answer = ""
    try:
        if answer.strip() != "yes":
            LOGGER.error("Nothing deleted")
            return EXIT_FAILED
        failed = index.clear()
    finally:
        index.close()
    for failure in failed:
        LOGGER.error(f"Could not delete {failure}")
    LOGGER.info(f"Index {config.database_location} emptied" + (f"; {len(failed)} files left" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    try:
        config = load_config(args.config, {name: getattr(args, name) for name in OVERRIDABLE})
    except ConfigError as exc:
        LOGGER.error(str(exc))
        return EXIT_BAD_CONFIG
    try:
        index = open_index(config)
    except (OSError, sqlite3.Error) as exc:
        LOGGER.error(f"Cannot open the index {config.database_location} of {config.instance_location}: {exc}")
        return EXIT_FAILED
    if args.clean:
        return clean(index, config)
    ae = build_ae(config)
    if args.connection_timeout is not None:  # -to: to connect to a move destination
        ae.connection_timeout = args.connection_timeout
    service = QueryRetrieveService(config, index)
    try:
        served = serve(ae, (config.bind_address, config.port), evt_handlers=service.handlers())
    finally:
        index.close()
    return EXIT_OK if served else EXIT_FAILED


if __name__ == "__main__":
    exit_process(main())
