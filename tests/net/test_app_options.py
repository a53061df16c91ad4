"""Bad option and setting values end an app with a clear message, never a traceback.

Each app runs as a process (`python -m router.net APP ...`). A value the app
cannot run with (a port out of range, an AE title the engine refuses, a PDU
size or timeout outside the engine's limits, a count below 1) is refused as
argparse refuses one: the usage, `error: argument ...: why`, status 2. What
fails at run time (a port in use, an output folder that cannot be made, a
response file that cannot be written) is one line naming what failed, status 1.
The few tests that need a socket use loopback ports 12600-12699.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydicom import Dataset

from router.net import AE, evt
from router.net.sop_class import PatientRootQueryRetrieveInformationModelFind
from router.net.status import PENDING
from tests.conftest import LOOPBACK, Finished, our_app, run_client

BAD_OPTION = 2  # argparse's status for a bad option value, and qrscp's for a bad configuration
FAILED = 1
BUSY_PORT = 12601  # a socket of the test listens there
FIND_PORT = 12602  # the in-process C-FIND SCP of the -w test
STORE_PORT = 12603  # movescu's storage SCP, never reached: it fails before listening
NO_PEER_PORT = 12699  # nothing listens there; the apps fail before connecting
QUERY = ("-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=")
TOO_LONG = "TOOLONGTOOLONGTOOLONG"


def run(*args: str, cwd: Path | None = None) -> Finished:
    return run_client(our_app(*args), cwd=cwd)


def assert_refused(result: Finished, status: int, *messages: str) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.returncode == status, result.output
    for message in messages:
        assert message in result.output, result.output


def assert_bad_option(result: Finished, app: str, option: str, message: str) -> None:
    assert_refused(result, BAD_OPTION, f"{app}: error: argument {option}: {message}")


def write_config(folder: Path, text: str) -> Path:
    path = folder / "qrscp.ini"
    path.write_text("[DEFAULT]\ninstance_location = instances\ndatabase_location = :memory:\n" + text)
    return path


# ---- ports ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, option, port",
    [
        (("echoscp", "99999"), "port", "99999"),
        (("qrscp", "--port", "99999"), "--port", "99999"),
        (("movescu", LOOPBACK, str(NO_PEER_PORT), "--store", "--store-port", "99999", *QUERY), "--store-port", "99999"),
        (("echoscu", LOOPBACK, "70000"), "port", "70000"),
        (("findscu", LOOPBACK, "99999", *QUERY), "port", "99999"),
        (("getscu", LOOPBACK, "0", *QUERY), "port", "0"),
    ],
)
def test_a_port_out_of_range_is_refused_as_invalid(args, option, port):
    assert_bad_option(run(*args), args[0], option, f"invalid port {port}: a port is 1 to 65535")


def test_a_configured_port_out_of_range_is_refused_with_its_place(tmp_path):
    config = write_config(tmp_path, "port = 99999\n")
    result = run("qrscp", "-c", str(config))
    assert_refused(result, BAD_OPTION, f"E: {config}: [DEFAULT] port: invalid port 99999: a port is 1 to 65535")


# ---- where a server cannot listen ------------------------------------------------------------------
@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind((LOOPBACK, BUSY_PORT))
        sock.listen()
        yield BUSY_PORT


def test_echoscp_on_a_port_in_use_says_so(busy_port):
    result = run("echoscp", str(busy_port), "-ba", LOOPBACK)
    assert_refused(result, FAILED, f"E: Cannot listen on {LOOPBACK}:{busy_port}: Address already in use")


@pytest.mark.parametrize("address", ["10.255.255.1", "nosuchhost.invalid"])
def test_echoscp_on_an_address_not_ours_says_so(address):
    assert_refused(run("echoscp", str(BUSY_PORT), "-ba", address), FAILED, f"E: Cannot listen on {address}:{BUSY_PORT}: ")


def test_movescu_storage_scp_on_a_port_in_use_says_so(busy_port, tmp_path):
    result = run("movescu", LOOPBACK, str(NO_PEER_PORT), "--store", "--store-port", str(busy_port), "-od", str(tmp_path), *QUERY)
    assert_refused(result, FAILED, f"--store: Cannot listen on *:{busy_port}: Address already in use")


# ---- AE titles -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, option, problem",
    [
        (("findscu", LOOPBACK, str(NO_PEER_PORT), "-aec", TOO_LONG, *QUERY), "-aec/--called-aet", "21 characters, at most 16"),
        (("getscu", LOOPBACK, str(NO_PEER_PORT), "-aec", TOO_LONG, *QUERY), "-aec/--called-aet", "21 characters, at most 16"),
        (("findscu", LOOPBACK, str(NO_PEER_PORT), "-aet", "", *QUERY), "-aet/--calling-aet", "it is empty or only spaces"),
        (("echoscu", LOOPBACK, str(NO_PEER_PORT), "-aet", TOO_LONG), "-aet/--calling-aet", "21 characters, at most 16"),
        (("echoscp", str(NO_PEER_PORT), "-aet", TOO_LONG), "-aet/--ae-title", "21 characters, at most 16"),
        (("movescu", LOOPBACK, str(NO_PEER_PORT), "--store", "--store-aet", "", *QUERY), "--store-aet", "it is empty or only spaces"),
        (("movescu", LOOPBACK, str(NO_PEER_PORT), "-aem", "A\\B", *QUERY), "-aem/--move-aet", "no backslash"),
        (("qrscp", "-aet", TOO_LONG), "-aet/--ae-title", "21 characters, at most 16"),
    ],
)
def test_an_ae_title_the_engine_refuses_is_refused_at_parse_time(args, option, problem):
    result = run(*args)
    assert_bad_option(result, args[0], option, "Invalid AE title")
    assert problem in result.output


def test_qrscp_blames_the_command_line_for_its_ae_title_not_the_file(tmp_path):
    config = write_config(tmp_path, "ae_title = FINE\n")
    result = run("qrscp", "-c", str(config), "-aet", TOO_LONG)
    assert_bad_option(result, "qrscp", "-aet/--ae-title", f"Invalid AE title '{TOO_LONG}'")
    assert str(config) not in result.output


def test_qrscp_says_where_an_empty_ae_title_is_once(tmp_path):
    config = write_config(tmp_path, "ae_title =\n")
    result = run("qrscp", "-c", str(config))
    assert_refused(result, BAD_OPTION)
    assert result.output.strip() == f"E: {config}: [DEFAULT] ae_title: missing"


# ---- PDU sizes and timeouts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, option, message",
    [
        (("findscu", LOOPBACK, str(NO_PEER_PORT), "-pdu", "-5", *QUERY), "-pdu/--max-pdu", "invalid maximum PDU size -5"),
        (("echoscu", LOOPBACK, str(NO_PEER_PORT), "-pdu", "4"), "-pdu/--max-pdu", "invalid maximum PDU size 4"),
        (("qrscp", "-c", "x.ini", "-pdu", "3"), "-pdu/--max-pdu", "invalid maximum PDU size 3"),
        (("findscu", LOOPBACK, str(NO_PEER_PORT), "-td", "-1", *QUERY), "-td/--dimse-timeout", "invalid timeout -1"),
        (("echoscu", LOOPBACK, str(NO_PEER_PORT), "-to", "-1"), "-to/--connection-timeout", "invalid timeout -1"),
        (("echoscu", LOOPBACK, str(NO_PEER_PORT), "-ta", "nan"), "-ta/--acse-timeout", "invalid timeout nan"),
        (("qrscp", "-to", "-1"), "-to/--connection-timeout", "invalid timeout -1"),
        (("qrscp", "-tn", "soon"), "-tn/--network-timeout", "'soon' is not a number"),
    ],
)
def test_a_pdu_size_or_timeout_outside_the_engines_limits_is_refused(args, option, message):
    assert_bad_option(run(*args), args[0], option, message)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("max_pdu = 3", "max_pdu: invalid maximum PDU size 3: 0 (no limit) or at least"),
        ("acse_timeout = -1", "acse_timeout: invalid timeout -1: a finite number of seconds >= 0"),
    ],
)
def test_a_configured_pdu_size_or_timeout_outside_the_limits_is_refused_with_its_place(tmp_path, setting, message):
    config = write_config(tmp_path, setting + "\n")
    assert_refused(run("qrscp", "-c", str(config)), BAD_OPTION, f"E: {config}: [DEFAULT] {message}")


# ---- counts ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, option, message",
    [
        (("echoscp", str(NO_PEER_PORT), "--max-associations", "0"), "--max-associations", "0 is below 1"),
        (("echoscu", LOOPBACK, str(NO_PEER_PORT), "--repeat", "0"), "--repeat", "0 is below 1"),
        (("echoscu", LOOPBACK, str(NO_PEER_PORT), "--repeat", "-2"), "--repeat", "-2 is below 1"),
    ],
)
def test_a_count_below_one_is_refused(args, option, message):
    assert_bad_option(run(*args), args[0], option, message)


# ---- output folders and files ------------------------------------------------------------------------
@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("below_the_file", [True, False])
def test_getscu_says_which_output_directory_it_cannot_make(a_file, below_the_file):
    folder = a_file / "sub" if below_the_file else a_file
    result = run("getscu", LOOPBACK, str(NO_PEER_PORT), "-od", str(folder), *QUERY)
    assert_refused(result, FAILED, f"E: Cannot use {folder} as the output directory: ")


def test_movescu_names_the_output_directory_not_the_port(a_file):
    folder = a_file / "sub"
    result = run("movescu", LOOPBACK, str(NO_PEER_PORT), "--store", "--store-port", str(STORE_PORT), "-od", str(folder), *QUERY)
    assert_refused(result, FAILED, f"E: Cannot use {folder} as the output directory: Not a directory")
    assert "storage SCP" not in result.output and str(STORE_PORT) not in result.output


@pytest.fixture
def find_scp():
    """A C-FIND SCP on FIND_PORT that answers every query with two matches."""

    def find(event: evt.Event):
        for patient in ("P1", "P2"):
            match = Dataset()
            match.QueryRetrieveLevel, match.PatientID = "PATIENT", patient
            yield PENDING, match

    ae = AE("FINDSCP")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    ae.start_server((LOOPBACK, FIND_PORT), block=False, evt_handlers=[(evt.EVT_C_FIND, find)])
    try:
        yield FIND_PORT
    finally:
        ae.shutdown()


def test_findscu_says_which_response_file_it_cannot_write(find_scp, tmp_path):
    (tmp_path / "rsp000001.dcm").mkdir()  # in the way of the first response file, even for root
    result = run("findscu", LOOPBACK, str(find_scp), "-w", *QUERY, cwd=tmp_path)
    assert_refused(result, FAILED, "E: Cannot write the response file rsp000001.dcm: Is a directory")
    assert "no final response" not in result.output and "Find failed" not in result.output
    assert not (tmp_path / "rsp000002.dcm").exists()  # the search ended at the first file it could not write
