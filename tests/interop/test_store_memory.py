"""Our storage apps under resource limits: a 1 GB instance, and a disk that fills up.

Our storescu app (a process) sends a generated 1 GiB instance to our
storescp app (a process). The receiver spools the data set to a file and the
sender streams it from its file, so neither's peak RSS may grow by 64 MB or
more: the receiver's peak (VmHWM) after the transfer is compared with its
VmHWM when idle right after start; the sender's peak (its VmHWM as it exits)
with the same app's peak sending a 10 KB instance. The stored file must hold
the data set sent: the same length and SHA-256 after the file meta.

The instance is written to the test's folder in chunks and never held in
memory. The receiver announces no PDU limit (`-pdu 0`), so the sender uses
its largest PDUs.

A receiver whose disk fills mid data set (its file size limited by
RLIMIT_FSIZE) must fail that store cleanly: no part file left, no crashed
thread, the sender told and not crashing, and the next store accepted.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import LOOPBACK, our_app, wait_until
from tests.interop import store_data

GIGABYTE = 1 << 30
DISK_NEEDED = 3 * 10**9  # the file sent, the file stored, and room to spare
RSS_GROWTH_LIMIT = 64 * 10**6
TRANSFER_TIMEOUT = 240.0
KILOBYTE = 1024
STORED = "Received Store Response (Status: 0x0000 - Success)"


#: Our app as `python -m router.net` runs it, printing the process's VmHWM as it exits. (A
#: child's ru_maxrss from wait4 is useless here: it counts the forking test process's pages.)
PEAK_REPORTING_APP = """
import atexit, sys
from router.net.__main__ import main

def report_peak():
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            print("PEAK", line.split()[1], flush=True)

atexit.register(report_peak)
sys.exit(main(sys.argv[1:]))
"""


#: Our app as `python -m router.net` runs it, unable to write files past argv[1] bytes: a full disk.
#: (Python ignores SIGXFSZ, so a write past the limit fails with EFBIG like one on a full disk.)
FILE_SIZE_LIMITED_APP = """
import resource, sys
from router.net.__main__ import main

limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[2:]))
"""
DISK_FULL_AT = 20 << 20
DEFLATED_PIXELS = 256 << 20


def status_field(pid: int, field: str) -> int:
    """A memory figure from /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            value, unit = line.split(":", 1)[1].split()
            assert unit == "kB", line
            return int(value) * KILOBYTE
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reported_peak(output: str) -> int:
    peaks = [int(line.split()[1]) * KILOBYTE for line in output.splitlines() if line.startswith("PEAK ")]
    assert len(peaks) == 1, output
    return peaks[0]


def megabytes(count: int) -> str:
    return f"{count / 10**6:.1f} MB"


def small_instance(folder: Path, seed: int) -> store_data.Instance:
    """A 10 KB CT: what the sender's baseline peak is measured with."""
    ds = store_data.small_ct(seed=seed)
    return store_data.write_instance(ds, store_data.ExplicitVRLittleEndian, folder / "small.dcm", store_data.SMALL)


def storescp_args(port: int, out: Path, *options: str) -> list[str]:
    return ["storescp", str(port), "-v", "-ba", LOOPBACK, "-od", str(out), *options]


def send_measured(client, port: int, path: Path) -> tuple[int, float]:
    """Our storescu app sends `path` (it must succeed); its peak RSS and the run's seconds."""
    command = [sys.executable, "-c", PEAK_REPORTING_APP, "storescu", LOOPBACK, str(port), str(path), "-v", "-cx"]
    result = client(command, timeout=TRANSFER_TIMEOUT)
    assert result.returncode == 0, result.output
    assert STORED in result.output, result.output
    return reported_peak(result.output), result.elapsed


@pytest.mark.timeout(300)
def test_a_1_gb_instance_passes_with_bounded_memory(peers, client, tmp_path, record_property):
    free = shutil.disk_usage(tmp_path).free
    if free < DISK_NEEDED:
        pytest.skip(f"needs 3 GB free in {tmp_path}, has {megabytes(free)}")
    send = tmp_path / "send"
    send.mkdir()
    big = store_data.write_streamed_instance(send / "big.dcm", GIGABYTE)
    small = small_instance(send, seed=21)
    out = tmp_path / "received"
    scp = peers.start("our-storescp", lambda port: our_app(*storescp_args(port, out, "-pdu", "0")))
    idle_hwm = status_field(scp.pid, "VmHWM")
    idle_rss = status_field(scp.pid, "VmRSS")

    baseline_peak, _ = send_measured(client, scp.port, small.path)
    sender_peak, elapsed = send_measured(client, scp.port, big.instance.path)

    stored = out / f"{big.instance.sop_instance_uid}.dcm"
    assert scp.wait_for_output(f"Stored {stored}", timeout=30), scp.output()
    receiver_hwm = status_field(scp.pid, "VmHWM")
    figures = {
        "receiver_idle_hwm": idle_hwm,
        "receiver_idle_rss": idle_rss,
        "receiver_peak_hwm": receiver_hwm,
        "sender_baseline_peak": baseline_peak,
        "sender_1gb_peak": sender_peak,
        "transfer_seconds": round(elapsed, 2),
    }
    for name, value in figures.items():
        record_property(name, value)
    print("memory figures:", figures)
    assert receiver_hwm - idle_hwm < RSS_GROWTH_LIMIT, (
        f"the receiver's peak RSS grew by {megabytes(receiver_hwm - idle_hwm)} "
        f"({megabytes(idle_hwm)} -> {megabytes(receiver_hwm)})"
    )
    assert sender_peak - baseline_peak < RSS_GROWTH_LIMIT, (
        f"the sender's peak RSS grew by {megabytes(sender_peak - baseline_peak)} "
        f"({megabytes(baseline_peak)} for 10 KB -> {megabytes(sender_peak)} for 1 GiB)"
    )
    assert store_data.data_digest(stored) == (big.data_length, big.data_sha256)
    assert stored.stat().st_size - store_data.data_offset(stored) == big.data_length
    assert not list(out.glob("*.part"))


@pytest.mark.timeout(120)
def test_a_deflated_instance_is_sent_without_inflating_it(peers, client, tmp_path):
    """256 MiB of pixel data deflated to a few hundred KB: the sender streams the file as it is."""
    send = tmp_path / "send"
    send.mkdir()
    deflated = store_data.write_streamed_instance(
        send / "deflated.dcm", DEFLATED_PIXELS, store_data.DeflatedExplicitVRLittleEndian
    )
    assert deflated.instance.size < DEFLATED_PIXELS // 100
    small = small_instance(send, seed=22)
    out = tmp_path / "received"
    scp = peers.start("our-storescp", lambda port: our_app(*storescp_args(port, out)))

    baseline_peak, _ = send_measured(client, scp.port, small.path)
    sender_peak, _ = send_measured(client, scp.port, deflated.instance.path)

    assert sender_peak - baseline_peak < RSS_GROWTH_LIMIT, (
        f"the sender's peak RSS grew by {megabytes(sender_peak - baseline_peak)} sending a "
        f"{megabytes(deflated.instance.size)} file that inflates to {megabytes(DEFLATED_PIXELS)}"
    )
    stored = out / f"{deflated.instance.sop_instance_uid}.dcm"
    assert store_data.data_digest(stored) == (deflated.data_length, deflated.data_sha256)
    assert store_data.read_meta(stored).TransferSyntaxUID == store_data.DeflatedExplicitVRLittleEndian


@pytest.mark.timeout(120)
def test_a_full_disk_fails_the_store_cleanly_and_the_receiver_goes_on(peers, client, tmp_path):
    large, small = store_data.build_instances(tmp_path / "send", "explicit", (store_data.LARGE, store_data.SMALL))
    out = tmp_path / "received"
    scp = peers.start(
        "our-storescp",
        lambda port: [sys.executable, "-c", FILE_SIZE_LIMITED_APP, str(DISK_FULL_AT), *storescp_args(port, out)],
    )

    def storescu(*paths: Path):
        command = our_app("storescu", LOOPBACK, str(scp.port), *map(str, paths), "-v", "-cx")
        return client(command, timeout=TRANSFER_TIMEOUT)

    failed = storescu(large.path, small.path)

    assert failed.returncode == 1, failed.output  # the large one failed ...
    assert "Traceback" not in failed.output, failed.output
    assert "0xA700" in failed.output, failed.output  # ... with Out of Resources and a reason
    assert scp.wait_for_output("cannot spool the data set", timeout=10), scp.output()
    assert scp.is_running()
    assert "Exception in thread" not in scp.output(), scp.output()
    # The association went on: the small one after it was stored, and nothing of the large one is left.
    assert wait_until(lambda: sorted(p.name for p in out.iterdir()) == [f"{small.sop_instance_uid}.dcm"], 5.0)
    (out / f"{small.sop_instance_uid}.dcm").unlink()

    stored = storescu(small.path)

    assert stored.returncode == 0, stored.output
    assert store_data.data_digest(out / f"{small.sop_instance_uid}.dcm") == store_data.data_digest(small.path)
    assert sorted(p.name for p in out.iterdir()) == [f"{small.sop_instance_uid}.dcm"]
