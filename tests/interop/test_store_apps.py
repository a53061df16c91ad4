"""Our storescu and storescp apps, option by option, as processes over loopback.

storescu sends to our in-process server, which records what each instance
arrived with (calling AE title, the max PDU announced, the context's transfer
syntax, the bytes); a file cut short is named and not sent, to our server or
DCMTK's storescp; storescp is started as an app and sent to by our AE. The
progress line is checked in a pseudo-terminal, and its redraw while one file
is on its way with a stand-in terminal.
"""

from __future__ import annotations

import io
import os
import pty
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from router.net import AE, evt
from router.net.apps.storescu import Progress
from router.net.contexts import accept_all_storage
from router.net.status import CANNOT_UNDERSTAND, SUCCESS
from tests.conftest import CLIENT_TIMEOUT, LOOPBACK, our_app, peer_environment, wait_until
from tests.interop import store_data
from tests.interop.test_store_dcmtk import (
    assert_stored_as_sent,
    dcmtk_bit_preserving_storescp,
    exact_contexts_config,
    stored_file,
)

SCP_TITLE = "STORESCP"
BIG_ENDIAN_FILE = "MR_small_bigendian.dcm"  # pydicom's test file: no writer of ours makes big endian
MEGABYTE = 1 << 20


@dataclass(frozen=True)
class Arrival:
    calling_title: str
    max_pdu: int | None
    transfer_syntax: str
    sop_instance_uid: str
    data: bytes


class Recorder:
    """EVT_C_STORE: remember what each instance arrived with; answer Success."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self.lock = threading.Lock()

    def __call__(self, event: evt.Event) -> int:
        requestor = event.assoc.requestor
        arrival = Arrival(
            requestor.ae_title, requestor.maximum_length, event.context.transfer_syntax[0],
            event.request.affected_sop_instance_uid, event.encoded_dataset(include_meta=False),
        )
        with self.lock:
            self.arrivals.append(arrival)
        return SUCCESS


@pytest.fixture
def receiver(our_server) -> tuple[int, Recorder]:
    ae = AE(SCP_TITLE)
    accept_all_storage(ae)
    ae.acse_timeout = ae.dimse_timeout = 30
    recorder = Recorder()
    server = our_server.start(ae, evt_handlers=[(evt.EVT_C_STORE, recorder)])
    return server.server_address[1], recorder


def storescu(port: int, *args: str) -> list[str]:
    return our_app("storescu", LOOPBACK, str(port), "-aec", SCP_TITLE, *args)


def small_file(directory: Path, syntax: str, seed: int) -> store_data.Instance:
    directory.mkdir(parents=True, exist_ok=True)
    return store_data.write_instance(store_data.small_ct(seed), syntax, directory / f"ct-{seed}.dcm", store_data.SMALL)


# ---- storescu --------------------------------------------------------------------------------------
def test_storescu_r_sends_every_file_of_nested_folders(receiver, client, tmp_path):
    port, recorder = receiver
    top = tmp_path / "study"
    sent = [
        small_file(top, ExplicitVRLittleEndian, 1),
        small_file(top / "series-1", ImplicitVRLittleEndian, 2),
        small_file(top / "series-1" / "deeper", ExplicitVRLittleEndian, 3),
    ]

    finished = client(storescu(port, "-r", str(top)))

    assert finished.returncode == 0, finished.output
    assert sorted(a.sop_instance_uid for a in recorder.arrivals) == sorted(i.sop_instance_uid for i in sent)
    by_uid = {a.sop_instance_uid: a for a in recorder.arrivals}
    for instance in sent:
        assert by_uid[instance.sop_instance_uid].data == store_data.data_part(instance.path)


def test_storescu_without_r_names_the_folder_it_skips(receiver, client, tmp_path):
    port, recorder = receiver
    folder = tmp_path / "folder"
    small_file(folder, ExplicitVRLittleEndian, 1)

    finished = client(storescu(port, str(folder)))

    assert finished.returncode == 1
    assert f"{folder} is a folder: use -r" in finished.output
    assert recorder.arrivals == []


def test_storescu_sends_what_it_can_and_exits_1_naming_what_it_skipped(receiver, client, tmp_path):
    """A file that is not DICOM, a missing one and a folder without -r are named and skipped, the
    rest is sent, and the exit status says not everything was stored."""
    port, recorder = receiver
    good = small_file(tmp_path / "good", ExplicitVRLittleEndian, 1)
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image\n")
    missing = tmp_path / "gone.dcm"
    folder = tmp_path / "folder"
    folder.mkdir()

    finished = client(storescu(port, str(not_dicom), str(missing), str(good.path), str(folder)))

    assert finished.returncode == 1, finished.output
    assert [a.sop_instance_uid for a in recorder.arrivals] == [good.sop_instance_uid]
    assert f"Skipping {not_dicom}: not a DICOM instance" in finished.output
    assert f"Skipping {missing}: [Errno 2]" in finished.output
    assert f"{folder} is a folder" in finished.output
    assert "1 of 4 stored" in finished.output


def cut_short(instance: store_data.Instance, missing: int) -> store_data.Instance:
    data = instance.path.read_bytes()
    instance.path.write_bytes(data[: len(data) - missing])
    return instance


PIXELS_CUT = "truncated: Pixel Data needs 8192 bytes, 7192 remain"  # a small CT missing 1000 bytes


def test_storescu_names_a_file_cut_short_as_not_stored_and_sends_the_rest(receiver, client, tmp_path):
    port, recorder = receiver
    cut = cut_short(small_file(tmp_path, ExplicitVRLittleEndian, 1), missing=1000)
    whole = small_file(tmp_path, ExplicitVRLittleEndian, 2)

    finished = client(storescu(port, str(cut.path), str(whole.path)))

    assert finished.returncode == 1, finished.output
    assert [a.sop_instance_uid for a in recorder.arrivals] == [whole.sop_instance_uid]
    assert recorder.arrivals[0].data == store_data.data_part(whole.path)
    assert f"Skipping {cut.path}: {PIXELS_CUT}" in finished.output
    assert "1 of 2 stored" in finished.output


@pytest.mark.dcmtk
def test_storescu_to_dcmtk_storescp_sends_a_file_cut_where_its_pixel_data_ends_not_one_cut_inside(peers, client, tmp_path):
    """DCMTK's storescp (+B: the bytes as received) stores the whole file and the one that lost
    the element after its pixel data, and never hears of the one cut inside its pixel data."""
    out = tmp_path / "received"
    scp = dcmtk_bit_preserving_storescp(peers, out)
    whole = small_file(tmp_path, ExplicitVRLittleEndian, 1)
    padded = store_data.small_ct(2)
    padded.add_new(0xFFFCFFFC, "OB", b"\0" * 6)  # Data Set Trailing Padding, after the pixel data
    padded_file = store_data.write_instance(padded, ExplicitVRLittleEndian, tmp_path / "padded.dcm", store_data.SMALL)
    cut_after_pixels = cut_short(padded_file, missing=12 + 6)  # the padding's header and value
    cut_inside = cut_short(small_file(tmp_path, ExplicitVRLittleEndian, 3), missing=1000)
    paths = [str(instance.path) for instance in (whole, cut_inside, cut_after_pixels)]

    finished = client(our_app("storescu", LOOPBACK, str(scp.port), "-aec", SCP_TITLE, *paths))

    assert finished.returncode == 1, finished.output
    assert f"Skipping {cut_inside.path}: {PIXELS_CUT}" in finished.output
    assert "2 of 3 stored" in finished.output
    assert scp.wait_for_output("Association Release"), scp.output()
    for instance in (whole, cut_after_pixels):
        assert_stored_as_sent(instance, stored_file(out, instance))
    assert len(list(out.iterdir())) == 2


def test_storescu_aet_and_pdu_reach_the_peer(receiver, client, tmp_path):
    port, recorder = receiver
    instance = small_file(tmp_path, ExplicitVRLittleEndian, 1)

    finished = client(storescu(port, "-aet", "MODALITY7", "-pdu", "4096", str(instance.path)))

    assert finished.returncode == 0, finished.output
    [arrival] = recorder.arrivals
    assert (arrival.calling_title, arrival.max_pdu) == ("MODALITY7", 4096)
    assert arrival.data == store_data.data_part(instance.path)


def _file_in(syntax: str, directory: Path) -> Path:
    if syntax == ExplicitVRBigEndian:
        directory.mkdir(parents=True)
        path = directory / BIG_ENDIAN_FILE
        shutil.copyfile(get_testdata_file(BIG_ENDIAN_FILE), path)
        return path
    return small_file(directory, syntax, 7).path


@pytest.mark.parametrize(
    "option, syntax, other",
    [
        ("-xe", ExplicitVRLittleEndian, ImplicitVRLittleEndian),
        ("-xb", ExplicitVRBigEndian, ExplicitVRLittleEndian),
        ("-xi", ImplicitVRLittleEndian, ExplicitVRLittleEndian),
    ],
)
def test_storescu_syntax_option_proposes_that_syntax_alone(receiver, client, tmp_path, option, syntax, other):
    port, recorder = receiver
    matching = _file_in(syntax, tmp_path / "matching")
    mismatched = small_file(tmp_path / "other", other, 8)

    finished = client(storescu(port, option, "-cx", str(matching), str(mismatched.path)))

    assert finished.returncode == 1, finished.output  # the file in another syntax could not go
    assert f"{mismatched.path}: No presentation context for" in finished.output
    [arrival] = recorder.arrivals
    assert arrival.transfer_syntax == syntax
    assert arrival.data == store_data.data_part(matching)


# ---- storescp --------------------------------------------------------------------------------------
@pytest.fixture
def start_storescp(peers):
    def start(out: Path, *options: str) -> int:
        scp = peers.start(
            "our-storescp", lambda port: our_app("storescp", str(port), "-ba", LOOPBACK, "-aet", SCP_TITLE, "-od", str(out), *options)
        )
        return scp.port

    return start


def send(port: int, *datasets) -> list[int]:
    ae = AE("SENDER")
    ae.acse_timeout = ae.dimse_timeout = 30
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate(LOOPBACK, port, ae_title=SCP_TITLE)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(dataset).Status for dataset in datasets]
    finally:
        assoc.release()


def _dataset(syntax: str, seed: int, uid: str | None = None):
    dataset = store_data.small_ct(seed)
    if uid is not None:
        dataset.SOPInstanceUID = uid
    dataset.file_meta = store_data.file_meta_for(dataset, syntax)
    return dataset


def test_storescp_ignore_answers_success_and_writes_nothing(start_storescp, tmp_path):
    out = tmp_path / "out"
    port = start_storescp(out, "--ignore")

    statuses = send(port, _dataset(ExplicitVRLittleEndian, 1), _dataset(ImplicitVRLittleEndian, 2))

    assert statuses == [SUCCESS, SUCCESS]
    assert list(out.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom's, as the bad UID is set
def test_storescp_refuses_a_uid_that_would_leave_its_folder_and_goes_on(start_storescp, tmp_path):
    out = tmp_path / "out" / "inner"
    port = start_storescp(out)
    good = _dataset(ExplicitVRLittleEndian, 2)

    statuses = send(port, _dataset(ExplicitVRLittleEndian, 1, uid="../escaped"), good)

    assert statuses == [CANNOT_UNDERSTAND, SUCCESS]
    outside = tmp_path / "out"
    assert {path.relative_to(outside).as_posix() for path in outside.rglob("*")} == {"inner", f"inner/{good.SOPInstanceUID}.dcm"}


@pytest.mark.dcmtk
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom's, for the leading zero
@pytest.mark.parametrize("promiscuous", [True, False])
def test_storescp_pm_takes_private_and_newer_storage_classes(start_storescp, client, tmp_path, promiscuous):
    out = tmp_path / "out"
    port = start_storescp(out, *(["-pm"] if promiscuous else []))
    files = store_data.unlisted_class_files(tmp_path / "unlisted")
    config, profile = exact_contexts_config(tmp_path / "storescu.cfg", files)  # DCMTK proposes them only from a profile

    result = client(["storescu", "-v", "-aec", SCP_TITLE, "-xf", config, profile, LOOPBACK, str(port), *(str(f.path) for f in files)])

    if promiscuous:
        assert result.returncode == 0 and result.output.count("Received Store Response (Success)") == 2, result.output
        for instance in files:
            stored = out / f"{instance.sop_instance_uid}.dcm"
            assert store_data.data_part(stored) == store_data.data_part(instance.path)
            assert store_data.read_meta(stored).MediaStorageSOPClassUID == instance.sop_class_uid
    else:
        assert "Received Store Response" not in result.output, result.output
        assert list(out.iterdir()) == []


# ---- storescu's progress line ----------------------------------------------------------------------
class StandInTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_moves_while_a_file_is_on_its_way_and_ends_with_the_count():
    sent = [0]
    terminal = StandInTerminal()
    progress = Progress(2, 10 * MEGABYTE, lambda: sent[0], terminal)
    try:
        sent[0] = 5 * MEGABYTE  # half of the first file out, nothing answered yet

        assert wait_until(lambda: "0/2 files" in terminal.getvalue() and " MB/s  ETA " in terminal.getvalue(), 5.0)
        sent[0] = 10 * MEGABYTE
        progress.advance()
        progress.advance()
    finally:
        progress.finish()

    assert terminal.getvalue().rstrip(" \n").rpartition("\r")[2].startswith("2/2 files")
    assert terminal.getvalue().endswith("\n")


def test_progress_line_is_silent_when_not_a_terminal():
    stream = io.StringIO()
    progress = Progress(1, MEGABYTE, lambda: MEGABYTE, stream)
    progress.advance()
    progress.finish()

    assert stream.getvalue() == ""


def test_storescu_app_draws_its_progress_line_in_a_terminal(receiver, tmp_path):
    port, recorder = receiver
    files = [str(small_file(tmp_path, ExplicitVRLittleEndian, seed).path) for seed in (1, 2, 3)]
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            storescu(port, *files), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
            env=peer_environment(),
        )
        os.close(slave)
        slave = -1
        assert process.wait(timeout=CLIENT_TIMEOUT) == 0
        drawn = _read_all(master)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)

    assert len(recorder.arrivals) == 3
    last_line = drawn.replace("\r\n", "\n").rstrip("\n ").rpartition("\r")[2]
    assert last_line.startswith("3/3 files") and " MB/s  ETA " in last_line, repr(drawn)


def _read_all(master: int) -> str:
    """What the pseudo-terminal got, once its only writer has exited (then reading it fails)."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: no writer left
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
