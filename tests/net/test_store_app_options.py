"""storescp and storescu: bad values and failures end with a clear message, never a traceback.

Each app runs as a process (`python -m router.net APP ...`), as in
test_app_options.py: a bad option value is argparse's usage and status 2;
what fails at run time (an output folder that cannot be made, a port or
address storescp cannot listen on, an instance the peer did not store) is
named in a line of its own, status 1. The SCPs storescu sends to run in
process, on free loopback ports; storescp's tests use loopback ports
13800-13899 where it fails before listening.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from router.net import AE, evt
from router.net.contexts import accept_all_storage
from router.net.status import COERCION_OF_DATA_ELEMENTS, OUT_OF_RESOURCES
from tests.conftest import LOOPBACK, Finished
from tests.interop import store_data
from tests.net.test_app_options import FAILED, assert_bad_option, assert_refused, run

STORED = 0
UNUSED_PORT = 13800  # storescp fails before listening there
NO_PEER_PORT = 13899  # nothing listens there; storescu fails before connecting
TOO_LONG_17 = "A" * 17


# ---- storescp -------------------------------------------------------------------------------------
@pytest.mark.parametrize("below_the_file", [True, False])
def test_storescp_says_which_output_directory_it_cannot_make(tmp_path, below_the_file):
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    folder = a_file / "sub" if below_the_file else a_file
    result = run("storescp", str(UNUSED_PORT), "-od", str(folder))
    assert_refused(result, FAILED, f"E: Cannot use {folder} as the output directory: ")


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("fork", [[], ["--fork"]])
def test_storescp_on_a_port_in_use_says_so(busy_port, tmp_path, fork):
    result = run("storescp", str(busy_port), "-ba", LOOPBACK, "-od", str(tmp_path), *fork)
    assert_refused(result, FAILED, f"E: Cannot listen on {LOOPBACK}:{busy_port}: Address already in use")


@pytest.mark.parametrize("address", ["999.1.1.1", "nosuchhost.invalid"])
def test_storescp_on_an_address_not_ours_says_so(tmp_path, address):
    result = run("storescp", str(UNUSED_PORT), "-ba", address, "-od", str(tmp_path))
    assert_refused(result, FAILED, f"E: Cannot listen on {address}:{UNUSED_PORT}: ")


# ---- storescu options -----------------------------------------------------------------------------
def storescu(port: int | str, *args: str) -> Finished:
    return run("storescu", LOOPBACK, str(port), *args)


@pytest.mark.parametrize("option, message", [("-aec", "-aec/--called-aet"), ("-aet", "-aet/--calling-aet")])
def test_storescu_refuses_an_ae_title_of_17_characters(option, message):
    result = storescu(NO_PEER_PORT, "a.dcm", option, TOO_LONG_17)
    assert_bad_option(result, "storescu", message, f"Invalid AE title '{TOO_LONG_17}': 17 characters, at most 16")


@pytest.mark.parametrize("port", ["70000", "0"])
def test_storescu_refuses_a_port_out_of_range(port):
    result = storescu(port, "a.dcm")
    assert_bad_option(result, "storescu", "port", f"invalid port {port}: a port is 1 to 65535")
    assert "Connection refused" not in result.output


@pytest.mark.parametrize(
    "value, message",
    [("-3", "invalid window -3: 0 (unlimited) to 65535"), ("65536", "invalid window 65536"), ("many", "'many' is not an integer")],
)
def test_storescu_refuses_an_async_ops_window_outside_16_bits(value, message):
    result = storescu(NO_PEER_PORT, "a.dcm", "--async-ops", value)
    assert_bad_option(result, "storescu", "--async-ops", message)


# ---- storescu: why an instance was not stored -----------------------------------------------------
def answering(status: int):
    """An EVT_C_STORE handler that answers every request with `status`."""
    return lambda event: status


def abort_the_association(event: evt.Event) -> int:
    """An EVT_C_STORE handler that ends the association before answering."""
    event.assoc.abort()
    return OUT_OF_RESOURCES


def storage_scp(our_server, handler) -> int:
    """The port of an in-process Storage SCP whose EVT_C_STORE handler is `handler`."""
    ae = AE("STORESCP")
    accept_all_storage(ae)
    ae.acse_timeout = ae.dimse_timeout = 30
    return our_server.start(ae, evt_handlers=[(evt.EVT_C_STORE, handler)]).server_address[1]


def two_files(folder: Path) -> list[str]:
    return [
        str(store_data.write_instance(store_data.small_ct(seed), ExplicitVRLittleEndian, folder / f"ct-{seed}.dcm", store_data.SMALL).path)
        for seed in (1, 2)
    ]


def test_storescu_names_each_file_the_peer_refused_and_why(our_server, tmp_path):
    files = two_files(tmp_path)
    result = storescu(storage_scp(our_server, answering(OUT_OF_RESOURCES)), *files)
    assert_refused(result, FAILED, "E: 0 of 2 stored")
    for path in files:
        assert f"E: {path}: the peer answered 0xA700 - Refused: out of resources" in result.output


def test_storescu_names_each_file_left_without_a_response(our_server, tmp_path):
    files = two_files(tmp_path)
    result = storescu(storage_scp(our_server, abort_the_association), *files)
    assert_refused(result, FAILED, "E: 0 of 2 stored")
    for path in files:
        assert f"E: {path}: no response: the association ended" in result.output


def test_storescu_counts_a_warning_as_stored_without_an_error(our_server, tmp_path):
    files = two_files(tmp_path)
    result = storescu(storage_scp(our_server, answering(COERCION_OF_DATA_ELEMENTS)), *files)
    assert_refused(result, STORED)
    assert "E:" not in result.output
