"""qrscp over an instance folder that holds more than whole DICOM files, as a real process on loopback.

An instance cut short inside its pixel data, a dangling symbolic link and a FIFO sit next to a
patient's whole instances (the library of tests/net/test_qr_index.py): qrscp starts, says at its
default log level which files it skips and why, and a C-GET of the patient sends the whole
instances only. A sub-folder it may not list is skipped and said so too: the permission bits do not
stop root, so under root qrscp runs as `nobody` (setpriv), over a folder outside pytest's own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import LOOPBACK, REPO_ROOT, our_app
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


def nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def as_unprivileged(command: list[str]) -> list[str]:
    """`command`, run by a user a folder's permission bits stop: ours, or under root (whom they do
    not stop) `nobody`, through setpriv."""
    if os.geteuid() != 0:
        return command
    user, setpriv = nobody(), shutil.which("setpriv")
    if user is None or setpriv is None:
        pytest.skip("root lists a folder of mode 000, and setpriv or the user 'nobody' to run qrscp as is missing")
    unprivileged = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    probe = subprocess.run(
        [*unprivileged, sys.executable, "-c", "import router.net"], cwd=REPO_ROOT, capture_output=True, timeout=60
    )
    if probe.returncode != 0:  # e.g. a checkout under /root, which only root may enter
        pytest.skip(f"'nobody' cannot run this checkout's apps: {probe.stderr.decode(errors='replace').strip()[-200:]}")
    return [*unprivileged, *command]


@pytest.fixture
def open_folder():
    """A folder the user of `as_unprivileged` owns, outside pytest's (which only we may enter)."""
    folder = Path(tempfile.mkdtemp(prefix="qrscp-test-"))
    folder.chmod(0o755)
    user = nobody()
    if os.geteuid() == 0 and user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    yield folder
    for directory, sub_folders, _ in os.walk(folder):  # each folder opened before the walk enters it
        for name in sub_folders:
            os.chmod(os.path.join(directory, name), stat.S_IRWXU)  # for a user who is not root to delete it
    shutil.rmtree(folder)


def test_qrscp_skips_and_reports_a_folder_it_cannot_list(open_folder, peers):
    folder = open_folder / "archive"
    write_library(folder)
    locked = folder / "P9"
    locked.mkdir()
    write_instance(Spec("P9", "Locked^Lee", 9, "20240101", 1, "CT", 1), locked / "CT1-1")
    locked.chmod(0)
    config = write_config(open_folder / "qrscp.ini", folder, {})
    qrscp = peers.start("qrscp", lambda port: as_unprivileged(our_app("qrscp", "-c", str(config), "--port", str(port), "-v")))
    summary = f"{len(LIBRARY)} instances in {folder}: {len(LIBRARY)} indexed, 0 unchanged, 1 skipped, 0 removed"
    assert qrscp.wait_for_output(summary), qrscp.output()
    assert f"E: Skipping {locked}: Permission denied" in qrscp.output()
