"""C-STORE between our engine and pynetdicom 3.0.4's apps, both directions.

pynetdicom's storescu decodes each file and encodes it again before sending,
and its storescp decodes what it receives and writes it anew, so the
comparison is pydicom's: the stored data set equals the sent one element for
element. Our storescp stores what pynetdicom sent as it arrived, under a file
meta that must be valid and name the instance. Each run carries a small CT, a
typical MR and a 50 MB+ multi-frame instance in one transfer syntax, or the
JPEG Baseline file passed through.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.conftest import LOOPBACK, our_app, pynetdicom_app
from tests.interop import store_data
from tests.interop.store_data import ALL_SYNTAX_NAMES, Instance

pytestmark = pytest.mark.pynetdicom

TRANSFER_TIMEOUT = 120.0  # one client run; pynetdicom moves about 60 MB/s
SCP_TITLE = "STORESCP"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return store_data.library(tmp_path_factory)


def assert_same_instance(instance: Instance, stored: Path) -> None:
    """`stored` holds the instance: a valid file meta naming it, and an equal data set."""
    received = pydicom.dcmread(stored)
    sent = pydicom.dcmread(instance.path)
    meta = received.file_meta
    assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert meta.MediaStorageSOPClassUID == instance.sop_class_uid
    assert meta.TransferSyntaxUID == instance.transfer_syntax
    assert received.SOPInstanceUID == instance.sop_instance_uid
    assert received == sent, f"{stored.name}: the data set differs from {instance.path.name}"


def stored_file(directory: Path, instance: Instance) -> Path:
    """The one file in `directory` whose name ends with the instance's SOP Instance UID (.dcm or not)."""
    uid = instance.sop_instance_uid
    found = [path for path in directory.iterdir() if path.name.removesuffix(".dcm").endswith(uid)]
    assert len(found) == 1, f"{uid} in {sorted(p.name for p in directory.iterdir())}"
    return found[0]


@pytest.mark.parametrize("syntax_name", ALL_SYNTAX_NAMES)
def test_pynetdicom_storescu_to_our_storescp_app(library, peers, client, tmp_path, syntax_name):
    instances = library.get(syntax_name)
    out = tmp_path / "received"
    ours = peers.start("our-storescp", lambda port: our_app("storescp", str(port), "-v", "-ba", LOOPBACK, "-od", str(out)))
    folder = instances[0].path.parent  # the library keeps one syntax's instances per folder

    result = client(
        pynetdicom_app("storescu", "-v", "-cx", "-r", "-aec", SCP_TITLE, LOOPBACK, str(ours.port), str(folder)),
        timeout=TRANSFER_TIMEOUT,
    )

    assert result.returncode == 0, result.output
    assert result.output.count("Received Store Response (Status: 0x0000 - Success)") == len(instances), result.output
    assert ours.wait_for_output("Association Released"), ours.output()
    for instance in instances:
        stored = out / f"{instance.sop_instance_uid}.dcm"
        assert_same_instance(instance, stored)
        assert store_data.read_meta(stored).SourceApplicationEntityTitle == "STORESCU"  # pynetdicom's title
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{i.sop_instance_uid}.dcm" for i in instances)


WINDOW = ("--async-ops", "8")  # proposed; pynetdicom's storescp negotiates none: one at a time


@pytest.mark.parametrize(
    "syntax_name, options",
    [(name, ()) for name in ALL_SYNTAX_NAMES] + [pytest.param("explicit", WINDOW, id="explicit-window")],
)
def test_our_storescu_app_to_pynetdicom_storescp(library, peers, client, tmp_path, syntax_name, options):
    instances = library.get(syntax_name)
    out = tmp_path / "received"
    out.mkdir()
    scp = peers.start(
        "pynetdicom-storescp",
        lambda port: pynetdicom_app("storescp", "-v", "-aet", SCP_TITLE, "-od", str(out), "-ba", LOOPBACK, str(port)),
    )

    result = client(
        our_app("storescu", LOOPBACK, str(scp.port), *(str(i.path) for i in instances), "-d", "-cx", "-aec", SCP_TITLE,
                *options),
        timeout=TRANSFER_TIMEOUT,
    )

    assert result.returncode == 0, result.output
    assert result.output.count("Received Store Response (Status: 0x0000 - Success)") == len(instances), result.output
    assert "Accepted Asynchronous Operations Window Negotiation: None" in result.output
    if options:
        assert "Requested Asynchronous Operations Window Negotiation: invoked 8, performed 1" in result.output
    assert scp.wait_for_output("Association Released"), scp.output()
    for instance in instances:
        assert_same_instance(instance, stored_file(out, instance))
