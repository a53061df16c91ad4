"""What every app shares: logging levels (-q/-v/-d), network and transfer syntax options, how an
app's process ends (`exit_process`), and how it listens (`serve`).

Option values are checked as they are parsed, by the same `parse_*` functions
the apps and qrscp's configuration use (ports 1 to 65535, AE titles, PDU
sizes and timeouts as the engine takes them): a bad one ends the app with
argparse's usage message and status 2, never a traceback.

The Query/Retrieve SCUs (findscu, getscu, movescu) also share their client
options, the information model options (-P/-S/-O/-W), and the query keys:
`-k KEY=VALUE` (a keyword or a (gggg,eeee) tag, `Seq[0].Keyword=...` inside
a sequence item; `KEY=` or a bare `KEY` asks for the key) over an optional
`-f` file.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
import threading
import warnings
from typing import Iterable, NoReturn

from pydicom import config, dcmread
from pydicom.datadict import dictionary_has_tag, dictionary_VR, repeater_has_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import validate_value

from router.net.ae import AE
from router.net.association import Association
from router.net.dimse import MIN_PDU_LENGTH
from router.net.log import LOGGER, debug_logger
from router.net.presentation import (
    DEFAULT_TRANSFER_SYNTAXES,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)
from router.net.status import PENDING, SUCCESS, Service, describe
from router.net.values import validate_ae_title

DISTRIBUTION = "dicom-router"  # the package --version reports
DEFAULT_PDU = 16382  # what the apps announce unless told (pynetdicom's default)
MAX_PORT = 65535


def exit_process(code: int | None) -> NoReturn:
    """End an app's process with `code` without tearing the interpreter down.

    Python's own exit frees every module, pydicom's dictionaries among them:
    30 to 50 ms of CPU per run, more than sending 100 small instances takes.
    Once the main thread is the only one left, the logs and the standard
    streams are flushed and the process ends at once; with another thread
    still running it exits the usual way, which waits for that thread.
    """
    if threading.active_count() > 1:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code or 0)


class _PrintVersion(argparse.Action):
    """--version: the project's version, looked up only when asked (the lookup costs each start)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version(DISTRIBUTION)
        except PackageNotFoundError:
            number = "(not installed)"
        print(f"{parser.prog} {number}")
        parser.exit()


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_PrintVersion)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="quiet mode, print no warnings and errors")
    group.add_argument("-v", "--verbose", action="store_true", help="verbose mode, print processing details")
    group.add_argument("-d", "--debug", action="store_true", help="debug mode, print debug information")


class BadValue(ValueError, argparse.ArgumentTypeError):
    """An option or setting value the apps cannot run with; argparse prints its message as it is."""


def parse_port(text: str) -> int:
    """A TCP/IP port, 1 to 65535."""
    port = parse_integer(text)
    if not 1 <= port <= MAX_PORT:
        raise BadValue(f"invalid port {port}: a port is 1 to {MAX_PORT}")
    return port


def parse_positive_int(text: str) -> int:
    number = parse_integer(text)
    if number < 1:
        raise BadValue(f"{number} is below 1")
    return number


def parse_pdu_size(text: str) -> int:
    """A maximum PDU size the engine takes: 0 (no limit) or at least MIN_PDU_LENGTH bytes."""
    size = parse_integer(text)
    if size < 0 or 0 < size < MIN_PDU_LENGTH:
        raise BadValue(f"invalid maximum PDU size {size}: 0 (no limit) or at least {MIN_PDU_LENGTH}")
    return size


def parse_seconds(text: str) -> float:
    """A timeout the engine takes: a finite number of seconds >= 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise BadValue(f"'{text}' is not a number") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise BadValue(f"invalid timeout {text}: a finite number of seconds >= 0")
    return seconds


def parse_ae_title(text: str) -> str:
    """An AE title as the engine takes it (`validate_ae_title`), without surrounding spaces."""
    try:
        return validate_ae_title(text)
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def parse_integer(text: str) -> int:
    """An integer option value."""
    try:
        return int(text)
    except ValueError:
        raise BadValue(f"'{text}' is not an integer") from None


def server_parser(prog: str, description: str, ae_title: str) -> argparse.ArgumentParser:
    """A parser with what every SCP app takes: the port, -q/-v/-d, -aet, -ba, the association limit."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("port", type=parse_port, help="TCP/IP port to listen on")
    add_output_options(parser)
    parser.add_argument("-aet", "--ae-title", type=parse_ae_title, default=ae_title, help="our AE title")
    parser.add_argument("-ba", "--bind-address", default="", help="address to listen on (default: all)")
    parser.add_argument("--max-associations", type=parse_positive_int, default=10, help="associations served at once")
    return parser


def serve(ae: AE, address: tuple[str, int], **kwargs) -> bool:
    """Serve associations on `address` until interrupted; False (the reason logged) if it cannot listen there."""
    try:
        ae.start_server(address, block=True, **kwargs)
    except OSError as exc:  # the port in use, an address not ours or unknown
        LOGGER.error(cannot_listen(address, exc))
        return False
    return True


def cannot_listen(address: tuple[str, int], exc: OSError) -> str:
    host, port = address
    return f"Cannot listen on {host or '*'}:{port}: {exc.strerror or exc}"


def make_output_directory(path: str) -> bool:
    """Create the -od folder `path` unless it exists; False (the reason logged) if it cannot be."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission
        LOGGER.error(f"Cannot use {path} as the output directory: {exc.strerror or exc}")
        return False
    return True


def add_timeout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-to", "--connection-timeout", type=parse_seconds, metavar="[s]econds", help="timeout for connection requests")
    parser.add_argument("-ta", "--acse-timeout", type=parse_seconds, default=30.0, metavar="[s]econds", help="timeout for ACSE messages")
    parser.add_argument("-td", "--dimse-timeout", type=parse_seconds, default=30.0, metavar="[s]econds", help="timeout for DIMSE messages")
    parser.add_argument("-tn", "--network-timeout", type=parse_seconds, default=30.0, metavar="[s]econds", help="timeout for the network")
    parser.add_argument("-pdu", "--max-pdu", type=parse_pdu_size, default=DEFAULT_PDU, metavar="[n]umber of bytes", help="maximum PDU size to receive, 0 = unlimited")


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


# ---- Query/Retrieve SCUs --------------------------------------------------------------------
def associate_for(args: argparse.Namespace, model: str) -> Association:
    """An association from -aet to the peer (-aec at ADDR PORT) proposing the Q/R `model`."""
    ae = AE(args.calling_aet)
    configure_timeouts(ae, args)
    ae.add_requested_context(model)
    return ae.associate(args.addr, args.port, ae_title=args.called_aet, max_pdu=args.max_pdu)


PATIENT_ROOT, STUDY_ROOT, PATIENT_STUDY_ONLY, WORKLIST = "patient", "study", "psonly", "worklist"
_KEY_COMPONENT = re.compile(
    r"^(?:\(?(?P<group>[0-9A-Fa-f]{4}),(?P<element>[0-9A-Fa-f]{4})\)?|(?P<keyword>[A-Za-z][A-Za-z0-9]*))"
    r"(?:\[(?P<item>\d+)\])?$"
)
_NUMBER_TYPES = {"US": int, "UL": int, "UV": int, "SS": int, "SL": int, "SV": int, "FL": float, "FD": float}
_NOT_TEXT_VRS = frozenset({"AT", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_INTEGER_RANGES = {
    "US": range(0, 1 << 16), "UL": range(0, 1 << 32), "UV": range(0, 1 << 64),
    "SS": range(-(1 << 15), 1 << 15), "SL": range(-(1 << 31), 1 << 31), "SV": range(-(1 << 63), 1 << 63),
}
_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})  # PS3.4 C.2.2.2.4
MAX_ITEM_INDEX = 999  # Seq[n] in a -k key: items up to n are made, so n is bounded
_BACKSLASH = "\\"
_SUB_OPERATION_COUNTS = (  # what a C-GET/C-MOVE response counts, as logs name it
    ("completed", "NumberOfCompletedSuboperations"),
    ("failed", "NumberOfFailedSuboperations"),
    ("warning", "NumberOfWarningSuboperations"),
)


class QueryKeyError(ValueError):
    """A -k key or -f file the app cannot turn into an identifier; the message quotes it."""


def client_parser(prog: str, description: str, calling_aet: str) -> argparse.ArgumentParser:
    """A parser with what every SCU app takes: the peer, -q/-v/-d, -aet/-aec and the timeouts."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("addr", help="TCP/IP address of the peer")
    parser.add_argument("port", type=parse_port, help="TCP/IP port of the peer")
    add_output_options(parser)
    parser.add_argument("-aet", "--calling-aet", type=parse_ae_title, default=calling_aet, help=f"our AE title (default: {calling_aet})")
    parser.add_argument("-aec", "--called-aet", type=parse_ae_title, default="ANY-SCP", help="the peer's AE title (default: ANY-SCP)")
    add_timeout_options(parser)
    return parser


def add_model_options(parser: argparse.ArgumentParser, worklist: bool = False) -> None:
    """-P (the default), -S, -O and, for C-FIND, -W: the information model, as `args.model`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-P", "--patient", dest="model", action="store_const", const=PATIENT_ROOT, help="use the patient root information model (default)")
    group.add_argument("-S", "--study", dest="model", action="store_const", const=STUDY_ROOT, help="use the study root information model")
    group.add_argument("-O", "--psonly", dest="model", action="store_const", const=PATIENT_STUDY_ONLY, help="use the patient/study only information model")
    if worklist:
        group.add_argument("-W", "--worklist", dest="model", action="store_const", const=WORKLIST, help="use the modality worklist information model")
    parser.set_defaults(model=PATIENT_ROOT)


def add_query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-k", "--keyword", action="append", default=[], metavar="KEY=VALUE",
        help="add or override a query key: a keyword or (gggg,eeee) tag, Seq[n].Key for an item's key; no VALUE to return it",
    )
    parser.add_argument("-f", "--file", metavar="path to [f]ile", help="a DICOM file as the query, -k keys added to it")


def query_identifier(args: argparse.Namespace) -> Dataset | None:
    """The identifier of the -f file and the -k keys; None (the reason logged) if one is bad."""
    try:
        return build_identifier(args.file, args.keyword)
    except QueryKeyError as exc:
        LOGGER.error(str(exc))
        return None


def build_identifier(file: str | None, keys: list[str]) -> Dataset:
    """The identifier the -f file and the -k keys make; QueryKeyError if one of them is bad."""
    if not file and not keys:
        raise QueryKeyError("no query: give -k keys and/or a -f file")
    identifier = _read_query_file(file) if file else Dataset()
    for key in keys:
        set_query_key(identifier, key)
    return identifier


def _read_query_file(file: str) -> Dataset:
    """The data set of the -f `file` (with or without a Part 10 header), decoded now: a corrupt
    file fails here, not mid-request. QueryKeyError if it is unreadable or holds no DICOM data set
    (forced, pydicom reads any bytes as elements: a tag no dictionary knows gives that away)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's complaints: the one line below says what is wrong
            identifier = dcmread(file, force=True)
            tags = [element.tag for element in identifier.iterall()]
    except Exception as exc:  # unreadable or not DICOM: one line saying so
        raise QueryKeyError(f"cannot read the query file {file}: {exc}") from exc
    unknown = next((tag for tag in tags if not _known_tag(tag)), None)
    if not tags or unknown is not None:
        found = "no element" if not tags else f"tag {unknown}, which no dictionary knows"
        raise QueryKeyError(f"cannot read the query file {file}: not a DICOM data set ({found})")
    return identifier


def _known_tag(tag: BaseTag) -> bool:
    """A private tag, a group length or a tag of the dictionary, but no command element (group 0000)."""
    if tag.group == 0:
        return False
    return tag.is_private or tag.element == 0 or dictionary_has_tag(tag) or repeater_has_tag(tag)


def set_query_key(dataset: Dataset, text: str) -> None:
    """Apply one -k `text` ('PatientName=DOE*', '(0010,0020)=', 'Seq[0].Modality=CT') to `dataset`."""
    path, _, value = text.partition("=")
    components = [_key_component(text, part) for part in path.split(".")]
    target = dataset
    for tag, item in components[:-1]:
        target = _sequence_item(text, target, tag, item or 0)
    tag, item = components[-1]
    vr = dictionary_VR(tag)
    if vr == "SQ":
        if value:
            raise QueryKeyError(f"-k '{text}': a sequence takes no value, only items: Seq[n].Key=VALUE")
        if item is None:
            _sequence(target, tag)
        else:
            _sequence_item(text, target, tag, item)
        return
    if item is not None:
        raise QueryKeyError(f"-k '{text}': only a sequence has items")
    typed = _typed_value(text, vr, value)  # checked against the VR, wildcards allowed: pydicom's check would not
    target[tag] = DataElement(tag, vr, typed, validation_mode=config.IGNORE)


def _key_component(text: str, part: str) -> tuple[BaseTag, int | None]:
    match = _KEY_COMPONENT.match(part.strip())
    if match is None:
        raise QueryKeyError(f"-k '{text}': '{part}' is neither a keyword nor a (gggg,eeee) tag")
    if match["keyword"]:
        number = tag_for_keyword(match["keyword"])
        if number is None:
            raise QueryKeyError(f"-k '{text}': unknown keyword '{match['keyword']}'")
        tag = Tag(number)
    else:
        tag = Tag(int(match["group"], 16), int(match["element"], 16))
        try:
            dictionary_VR(tag)
        except KeyError:
            raise QueryKeyError(f"-k '{text}': {tag} is not in the DICOM dictionary") from None
    return tag, None if match["item"] is None else int(match["item"])


def _sequence(dataset: Dataset, tag: BaseTag) -> list:
    """The items of the sequence `tag` in `dataset`, created empty if absent."""
    if tag not in dataset:
        dataset.add_new(tag, "SQ", [])
    return dataset[tag].value


def _sequence_item(text: str, dataset: Dataset, tag: BaseTag, index: int) -> Dataset:
    if dictionary_VR(tag) != "SQ":
        raise QueryKeyError(f"-k '{text}': {tag} is not a sequence, it has no items")
    if index > MAX_ITEM_INDEX:
        raise QueryKeyError(f"-k '{text}': item {index} is past the last a query may name ({MAX_ITEM_INDEX})")
    items = _sequence(dataset, tag)
    while len(items) <= index:
        items.append(Dataset())
    return items[index]


def _typed_value(text: str, vr: str, value: str) -> object:
    if not value:
        return None
    if vr in _NOT_TEXT_VRS or " or " in vr:  # binary, or a VR the dictionary leaves open ("OB or OW")
        raise QueryKeyError(f"-k '{text}': a value of VR {vr} cannot be given on the command line")
    kind = _NUMBER_TYPES.get(vr)
    if kind is None:
        _check_text(text, vr, value)
        return value
    try:
        numbers = [kind(part) for part in value.split(_BACKSLASH)]
    except ValueError:
        raise QueryKeyError(f"-k '{text}': '{value}' is not a valid {vr} value") from None
    limits = _INTEGER_RANGES.get(vr)
    if limits is not None and not all(number in limits for number in numbers):
        raise QueryKeyError(f"-k '{text}': '{value}' is out of range for {vr} ({limits.start} to {limits.stop - 1})")
    return numbers[0] if len(numbers) == 1 else numbers


def _check_text(text: str, vr: str, value: str) -> None:
    """QueryKeyError unless each of the backslash-separated values is valid for `vr` (pydicom's
    rules: characters, lengths, dates and their ranges); * and ? count where wildcards may match."""
    for part in value.split(_BACKSLASH):
        checked = part.replace("*", "").replace("?", "") if vr in _WILDCARD_VRS else part
        try:
            validate_value(vr, checked, config.RAISE)
        except ValueError as exc:
            reason = str(exc).split(" Please see")[0]  # without pydicom's link to the standard
            raise QueryKeyError(f"-k '{text}': {reason}") from None


def retrieve_outcome(responses: Iterable[tuple[Dataset, Dataset | None]], service: Service) -> bool:
    """Follow a C-GET or C-MOVE to its final response and log it; True if it is Success."""
    final = Dataset()
    for final, _ in responses:
        if final.get("Status") == PENDING:
            LOGGER.info(f"{service.value}: {_sub_operation_counts(final)}, {final.get('NumberOfRemainingSuboperations', '?')} remaining")
    code = final.get("Status")
    if code is None:
        LOGGER.error(f"{service.value}: no final response from the peer")
        return False
    outcome = f"{service.value}: {describe_final(final, service)} ({_sub_operation_counts(final)})"
    if code == SUCCESS:
        LOGGER.info(outcome)
        return True
    LOGGER.error(outcome)
    return False


def describe_final(status: Dataset, service: Service) -> str:
    """A final status in words, with the peer's Error Comment when it gave one."""
    text = describe(status.Status, service)
    comment = status.get("ErrorComment")
    return f"{text} ({comment})" if comment else text


def _sub_operation_counts(status: Dataset) -> str:
    counts = [(name, status.get(keyword)) for name, keyword in _SUB_OPERATION_COUNTS]
    return ", ".join(f"{value} {name}" for name, value in counts if value is not None) or "no sub-operation counts"
