"""qrscp over an instance folder that holds more than whole DICOM files, as a real process on loopback.

An instance cut short inside its pixel data, a dangling symbolic link and a FIFO sit next to a
patient's whole instances (the library of tests/net/test_qr_index.py): qrscp starts, says at its
default log level which files it skips and why, and a C-GET of the patient sends the whole
instances only.
"""

from __future__ import annotations

import os

from tests.conftest import LOOPBACK, our_app
from tests.interop.test_qr_apps import write_config
from tests.net.test_qr_index import LIBRARY, Spec, write_instance, write_library

P1_UIDS = sorted(spec.sop_uid for spec in LIBRARY if spec.patient == "P1")


def test_qrscp_skips_and_reports_what_it_cannot_serve(peers, client, tmp_path):
    folder = tmp_path / "archive"
    write_library(folder)
    cut = write_instance(Spec("P1", "Doe^John", 1, "20200115", 1, "CT", 3), folder / "P1" / "cut.dcm")
    cut.write_bytes(cut.read_bytes()[:-50])
    (folder / "P1" / "dangling.dcm").symlink_to(folder / "nowhere")
    os.mkfifo(folder / "P1" / "pipe.dcm")
    config = write_config(tmp_path / "qrscp.ini", folder, {})
    qrscp = peers.start("qrscp", lambda port: our_app("qrscp", "-c", str(config), "--port", str(port)))  # no -v
    out = tmp_path / "got"
    result = client(our_app("getscu", LOOPBACK, str(qrscp.port), "-aec", "QRSCP", "-od", str(out),
                            "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P1"))
    assert result.returncode == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == [f"{uid}.dcm" for uid in P1_UIDS]
    log = qrscp.output()
    assert f"E: Skipping {cut}: truncated: Pixel Data needs 128 bytes, 78 remain" in log
    assert f"E: Skipping {folder / 'P1' / 'dangling.dcm'}: symbolic link to {folder / 'nowhere'}: No such file" in log
    assert f"E: Skipping {folder / 'P1' / 'pipe.dcm'}: not a regular file (a FIFO)" in log
