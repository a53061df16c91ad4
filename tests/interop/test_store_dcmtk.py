"""C-STORE between our engine and DCMTK 3.6.7, both directions, bit for bit.

DCMTK's `storescu` sends to our storescp app (a process) and to our
in-process server; our storescu app and `send_c_store` send to DCMTK's
`storescp +B` (bit-preserving). Each run carries a small CT, a typical MR and
a 50 MB+ multi-frame instance in one transfer syntax (Implicit, Explicit,
Deflated Explicit VR Little Endian), or pydicom's JPEG Baseline file passed
through. The stored file's data set must be the sent file's data set byte for
byte, and our file meta must be valid (dcmdump reads it; the SOP instance
matches).

DCMTK's storescu is given a configuration with one context per SOP class in
exactly the file's transfer syntax, so it sends each file as it is and never
converts it (otherwise the acceptor's choice among its proposals decides).
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.procs import children
from router.net import AE, evt
from router.net.contexts import accept_all_storage
from router.net.status import SUCCESS
from tests.conftest import CLIENT_TIMEOUT, LOOPBACK, our_app, peer_environment, wait_until
from tests.interop import store_data
from tests.interop.store_data import ALL_SYNTAX_NAMES, Instance

pytestmark = pytest.mark.dcmtk

TRANSFER_TIMEOUT = 120.0  # one client run: three instances, 55 MB the largest
DCMTK_STORED = "Received Store Response (Success)"
SCP_TITLE = "STORESCP"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return store_data.library(tmp_path_factory)


# ---- checks ----------------------------------------------------------------------------------
def dcmdump_meta(path: Path) -> str:
    """dcmdump's reading of the file's meta header (it fails on an invalid one)."""
    completed = subprocess.run(
        ["dcmdump", "-M", "+P", "0002,0003", "+P", "0002,0010", str(path)],
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=CLIENT_TIMEOUT,
        env=peer_environment(),
    )
    output = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
    assert completed.returncode == 0, f"dcmdump could not read {path}:\n{output}"
    return output


def assert_stored_as_sent(instance: Instance, stored: Path) -> None:
    """The stored data set is the sent one bit for bit, under a valid file meta naming it."""
    assert store_data.data_digest(stored) == store_data.data_digest(instance.path), (
        f"{stored.name}: the data set differs from {instance.path.name}"
    )
    meta = store_data.read_meta(stored)
    assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert meta.MediaStorageSOPClassUID == instance.sop_class_uid
    assert meta.TransferSyntaxUID == instance.transfer_syntax
    dumped = dcmdump_meta(stored)
    assert instance.sop_instance_uid in dumped, dumped


def stored_file(directory: Path, instance: Instance) -> Path:
    """The one file DCMTK's storescp (`-uf -fe .dcm`) named <modality>.<SOP Instance UID>.dcm."""
    found = [path for path in directory.iterdir() if path.name.endswith(f".{instance.sop_instance_uid}.dcm")]
    assert len(found) == 1, f"{instance.sop_instance_uid} in {sorted(p.name for p in directory.iterdir())}"
    return found[0]


# ---- DCMTK storescu -> us ------------------------------------------------------------------------
def exact_contexts_config(path: Path, instances: list[Instance]) -> tuple[str, str]:
    """A storescu configuration proposing each file's SOP class in exactly its transfer syntax."""
    syntaxes = sorted({instance.transfer_syntax for instance in instances})
    pairs = sorted({(instance.sop_class_uid, instance.transfer_syntax) for instance in instances})
    lines = ["[[TransferSyntaxes]]"]
    for index, syntax in enumerate(syntaxes, 1):
        lines += [f"[Syntax{index}]", f"TransferSyntax1 = {syntax}"]
    lines += ["[[PresentationContexts]]", "[Exact]"]
    for index, (sop_class, syntax) in enumerate(pairs, 1):
        lines.append(f"PresentationContext{index} = {sop_class}\\Syntax{syntaxes.index(syntax) + 1}")
    lines += ["[[Profiles]]", "[ExactProfile]", "PresentationContexts = Exact"]
    path.write_text("\n".join(lines) + "\n")
    return str(path), "ExactProfile"


def dcmtk_storescu(tmp_path: Path, port: int, instances: list[Instance], client) -> str:
    config, profile = exact_contexts_config(tmp_path / "storescu.cfg", instances)
    command = ["storescu", "-v", "-aet", "DCMTKSCU", "-aec", SCP_TITLE, "-xf", config, profile, LOOPBACK, str(port)]
    result = client([*command, *(str(instance.path) for instance in instances)], timeout=TRANSFER_TIMEOUT)
    assert result.returncode == 0, result.output
    assert result.output.count(DCMTK_STORED) == len(instances), result.output
    for line in result.output.splitlines():
        if "Converting transfer syntax:" in line:  # DCMTK logs this even when nothing changes
            source, target = line.split("Converting transfer syntax:", 1)[1].split(" -> ")
            assert source.strip() == target.strip(), line
    return result.output


@pytest.mark.parametrize("syntax_name", ALL_SYNTAX_NAMES)
def test_dcmtk_storescu_to_our_storescp_app(library, peers, client, tmp_path, syntax_name):
    instances = library.get(syntax_name)
    out = tmp_path / "received"
    ours = peers.start("our-storescp", lambda port: our_app("storescp", str(port), "-v", "-ba", LOOPBACK, "-od", str(out)))

    dcmtk_storescu(tmp_path, ours.port, instances, client)

    assert ours.wait_for_output("Association Released"), ours.output()
    for instance in instances:
        assert_stored_as_sent(instance, out / f"{instance.sop_instance_uid}.dcm")
    assert not list(out.glob("*.part")), sorted(p.name for p in out.iterdir())


class SavingHandler:
    """EVT_C_STORE: save as <SOP Instance UID>.dcm and remember who sent each instance."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.calling_titles: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, event: evt.Event) -> int:
        event.save_as(self.directory / f"{event.request.affected_sop_instance_uid}.dcm")
        with self.lock:
            self.calling_titles.append(event.assoc.requestor.ae_title)
        return SUCCESS


@pytest.mark.parametrize("syntax_name", ALL_SYNTAX_NAMES)
def test_dcmtk_storescu_to_our_in_process_server(library, our_server, client, tmp_path, syntax_name):
    instances = library.get(syntax_name)
    out = tmp_path / "received"
    out.mkdir()
    ae = AE(SCP_TITLE)
    accept_all_storage(ae)
    ae.acse_timeout = ae.dimse_timeout = 30
    ae.spool_directory = str(out)
    handler = SavingHandler(out)
    server = our_server.start(ae, evt_handlers=[(evt.EVT_C_STORE, handler)])

    dcmtk_storescu(tmp_path, server.server_address[1], instances, client)

    assert handler.calling_titles == ["DCMTKSCU"] * len(instances)
    for instance in instances:
        stored = out / f"{instance.sop_instance_uid}.dcm"
        assert_stored_as_sent(instance, stored)
        assert store_data.read_meta(stored).SourceApplicationEntityTitle == "DCMTKSCU"
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{i.sop_instance_uid}.dcm" for i in instances)


# ---- us -> DCMTK storescp +B -----------------------------------------------------------------------
def dcmtk_bit_preserving_storescp(peers, out: Path):
    """DCMTK's storescp writing exactly the bytes it receives (+B), accepting every syntax (+xa)."""
    out.mkdir()
    return peers.start(
        "dcmtk-storescp",
        lambda port: ["storescp", "-v", "+B", "+xa", "-aet", SCP_TITLE, "-od", str(out), "-uf", "-fe", ".dcm", str(port)],
    )


WINDOW = ("--async-ops", "8")  # proposed; DCMTK negotiates none: one at a time


@pytest.mark.parametrize(
    "syntax_name, options",
    [(name, ()) for name in ALL_SYNTAX_NAMES] + [pytest.param("explicit", WINDOW, id="explicit-window")],
)
def test_our_storescu_app_to_dcmtk_bit_preserving_storescp(library, peers, client, tmp_path, syntax_name, options):
    instances = library.get(syntax_name)
    out = tmp_path / "received"
    scp = dcmtk_bit_preserving_storescp(peers, out)

    result = client(
        our_app("storescu", LOOPBACK, str(scp.port), *(str(i.path) for i in instances), "-d", "-aec", SCP_TITLE, *options),
        timeout=TRANSFER_TIMEOUT,
    )

    assert result.returncode == 0, result.output
    assert result.output.count("Received Store Response (Status: 0x0000 - Success)") == len(instances), result.output
    assert "Accepted Asynchronous Operations Window Negotiation: None" in result.output
    if options:
        assert "Requested Asynchronous Operations Window Negotiation: invoked 8, performed 1" in result.output
    assert scp.wait_for_output("Association Release"), scp.output()
    for instance in instances:
        assert_stored_as_sent(instance, stored_file(out, instance))


@pytest.mark.parametrize("syntax_name", ALL_SYNTAX_NAMES)
def test_send_c_store_to_dcmtk_bit_preserving_storescp(library, peers, tmp_path, syntax_name):
    instances = library.get(syntax_name)
    out = tmp_path / "received"
    scp = dcmtk_bit_preserving_storescp(peers, out)
    ae = AE("OURSCU")
    for instance in instances:
        ae.add_requested_context(instance.sop_class_uid, [instance.transfer_syntax])
    ae.acse_timeout = ae.dimse_timeout = 30
    ae.connection_timeout = 5

    assoc = ae.associate(LOOPBACK, scp.port, ae_title=SCP_TITLE)
    assert assoc.is_established
    try:
        statuses = [assoc.send_c_store(instance.path).Status for instance in instances]
    finally:
        assoc.release()

    assert statuses == [SUCCESS] * len(instances)
    assert assoc.is_released
    for instance in instances:
        assert_stored_as_sent(instance, stored_file(out, instance))


def test_four_dcmtk_storescu_at_once_to_our_forking_storescp_app(library, peers, client, tmp_path):
    """`storescp --fork`: four associations at once, each in a process of its own, every instance
    stored bit for bit, and every child collected by the parent once its association ended."""
    out = tmp_path / "received"
    ours = peers.start(
        "our-storescp", lambda port: our_app("storescp", str(port), "--fork", "-v", "-ba", LOOPBACK, "-od", str(out))
    )
    sets = [library.get(name, kinds=("small", "typical")) for name in ALL_SYNTAX_NAMES]
    folders = [tmp_path / f"client-{index}" for index in range(len(sets))]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(len(sets)) as pool:
        runs = [pool.submit(dcmtk_storescu, folder, ours.port, instances, client) for folder, instances in zip(folders, sets)]
        for run in runs:
            run.result(timeout=TRANSFER_TIMEOUT)

    assert wait_until(lambda: ours.output().count("Association Released") == len(sets), 10), ours.output()
    for instance in (instance for instances in sets for instance in instances):
        assert_stored_as_sent(instance, out / f"{instance.sop_instance_uid}.dcm")
    assert wait_until(lambda: not children(ours.pid), 5), children(ours.pid)  # zombies included
    assert ours.is_running()
