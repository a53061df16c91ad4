"""The delivery contract (ARCHITECTURE 4, issue 4), proven with the whole router and real peers.

Each test runs `router run` (supervisor, listeners and workers as processes)
on loopback, DCMTK `storescu` as the modality and DCMTK `storescp +B` (and
Orthanc) as destinations, and counts what arrived by SOP Instance UID against
what storescu was answered Success:
1. 500 instances through 2 listeners and 2 workers reach both destinations
   exactly once, data sets bit for bit;
2. kill -9 of a worker, then of a listener, mid-stream: the supervisor
   restarts them and every acknowledged instance arrives;
3. a destination down for a while gets everything when it returns, and the
   other destination is not held up meanwhile;
4. kill -9 of the whole router mid-stream, then `router run` again: every
   acknowledged instance arrives;
5. a destination that refuses the SOP class: the jobs are dead with the
   reason, and `router queue retry --all` delivers them once it is fixed;
6. a spool over its `spool_limit`: the sender gets 0xA700, and what was
   accepted before arrives.

An announcement lost with a killed process is recovered by a worker's spool
scan, which records files older than its grace period every scan interval:
the waits after a kill allow for one scan (`SCAN_BOUND`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from contextlib import closing

import pytest

from bench.procs import children, process_state
from router.listener import USAGE_REFRESH_INTERVAL
from tests.conftest import is_listening, pick_free_port, wait_until
from tests.interop import store_data
from tests.interop.test_orthanc import assert_holds_as_sent
from tests.interop.test_store_dcmtk import exact_contexts_config
from tests.router import routing, test_listener
from tests.router.routing import Originals, Stream, arrivals, count_files, router_cli, router_setup, send
from tests.workers.harness import instances, start_storescp
from workers.queue import Queue
from workers.worker import Timing

root = test_listener.root  # a fixture: a short directory for config and spool (ipc:// path limit)
routers = routing.routers  # a fixture: `routers.start(setup)`, all stopped at teardown

SENT = 500
ARRIVAL_TIMEOUT = 60.0  # 500 instances to two destinations on two busy cores
STREAM_TIMEOUT = 120.0
SCAN_BOUND = Timing().scan_interval + Timing().scan_grace + 20.0  # a lost announcement waits for a spool scan
# The issue asks for 30 s; with a back-off of 1 s growing to 2 s, a destination down for 10 s is
# probed five times or more, the same path a 30 s outage takes, at a third of the CI time.
OUTAGE = 10.0
OUTAGE_RETRY = {"attempts": 100, "backoff": "1s", "max_backoff": "2s"}


@pytest.fixture(scope="module")
def sent(tmp_path_factory) -> list[store_data.Instance]:
    """500 small CT instances (~10 KB each), each with its own SOP Instance UID."""
    return instances(tmp_path_factory.mktemp("contract-data"), SENT)


@pytest.fixture(scope="module")
def originals(sent) -> Originals:
    return Originals(sent)


def uids_of(chosen: list[store_data.Instance]) -> list[str]:
    return [instance.sop_instance_uid for instance in chosen]


def stop_storescp(peer) -> None:
    """kill -9 of a forking storescp and the children serving its associations: a crashed destination.

    The parent is stopped (SIGSTOP) before its children are listed, so that it forks none for an
    association coming in meanwhile (a worker reconnecting after its child died): such a child would
    escape the list, keep the listening socket it inherited (the destination would not be down) and
    keep a storescp started again on the port from binding it.
    """
    os.kill(peer.pid, signal.SIGSTOP)
    assert wait_until(lambda: process_state(peer.pid) == "T", 10), process_state(peer.pid)
    for pid in [*children(peer.pid), peer.pid]:
        with contextlib.suppress(ProcessLookupError):  # a child whose association had just ended
            os.kill(pid, signal.SIGKILL)
    peer.process.wait(10)
    assert wait_until(lambda: not is_listening(peer.port), 10), f"port {peer.port} still listening after the kill"


# ---- 1. the happy path, at volume --------------------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.orthanc
@pytest.mark.timeout(240)
def test_500_instances_reach_two_destinations_once_each_bit_for_bit(
    sent, originals, root, peers, orthanc, routers, tmp_path
):
    pacs_port, pacs_out = pick_free_port(), tmp_path / "pacs"
    start_storescp(tmp_path, pacs_port, pacs_out, peers.peers)
    archive = orthanc.start()
    setup = router_setup(root, pick_free_port())
    setup.dicom("pacs", pacs_port, associations=2)
    setup.dicom("orthanc", archive.port, ae_title=archive.ae_title, associations=2)
    setup.forward_all("pacs", "orthanc")
    setup.write()
    router = routers.start(setup)

    streams = [Stream(router.port, half, tmp_path, batch=25).start() for half in (sent[0::2], sent[1::2])]
    acknowledged = [uid for stream in streams for uid in stream.join(STREAM_TIMEOUT).acknowledged]
    assert sorted(acknowledged) == sorted(uids_of(sent))

    assert arrivals(pacs_out, originals, acknowledged, ARRIVAL_TIMEOUT) == Counter(acknowledged)  # bit for bit
    assert count_files(pacs_out) == SENT  # and nothing else
    held = lambda: archive.get_json("/statistics")["CountInstances"]  # noqa: E731
    assert wait_until(lambda: held() == SENT, ARRIVAL_TIMEOUT, 0.2), f"Orthanc holds {held()}"
    for instance in sent:
        assert_holds_as_sent(archive, instance)
    log = archive.output()
    assert log.count("Incoming Store request from AET ROUTER") == SENT and "Already stored" not in log
    for name in ("listener-0", "listener-1", "worker-0", "worker-1"):  # 20 associations: the kernel used both listeners
        assert f" {name}: {'received' if name.startswith('listener') else 'delivered'} " in router.output(), name


# ---- 2. kill -9 of a worker, then of a listener --------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.timeout(240)
def test_kill_9_of_a_worker_then_a_listener_mid_stream_loses_no_acknowledged_instance(
    sent, originals, root, peers, routers, tmp_path
):
    pacs_port, pacs_out = pick_free_port(), tmp_path / "pacs"
    start_storescp(tmp_path, pacs_port, pacs_out, peers.peers)
    setup = router_setup(root, pick_free_port())
    setup.dicom("pacs", pacs_port, associations=2)
    setup.forward_all("pacs")
    setup.write()
    router = routers.start(setup)

    stream = Stream(router.port, sent, tmp_path, batch=10).start()
    assert wait_until(lambda: stream.acknowledged_count() >= 100, STREAM_TIMEOUT), stream.outputs
    worker = router.kill_child("worker-0")
    assert wait_until(lambda: stream.acknowledged_count() >= 200, STREAM_TIMEOUT), stream.outputs
    listener = router.kill_child("listener-0")
    assert stream.is_running(), "the stream ended before the kills: they were not mid-stream"
    router.wait_restarted("worker-0", worker)
    router.wait_restarted("listener-0", listener)
    acknowledged = stream.join(STREAM_TIMEOUT).acknowledged

    assert len(acknowledged) > SENT // 2, stream.outputs
    arrivals(pacs_out, originals, acknowledged, SCAN_BOUND)
    assert {name: entry["restarts"] for name, entry in router.processes().items()} == {
        "listener-0": 1, "listener-1": 0, "worker-0": 1, "worker-1": 0,
    }
    assert "worker-0 (pid" in router.output() and "exited with signal SIGKILL" in router.output()


# ---- 3. a destination down for a while ---------------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.timeout(180)
def test_a_destination_down_for_a_while_gets_everything_and_the_other_is_not_held_up(
    sent, originals, root, peers, routers, tmp_path
):
    pacs_port, archive_port = pick_free_port(), pick_free_port()
    pacs = start_storescp(tmp_path, pacs_port, tmp_path / "pacs-before", peers.peers)
    start_storescp(tmp_path, archive_port, tmp_path / "archive", peers.peers)
    setup = router_setup(root, pick_free_port())
    setup.dicom("pacs", pacs_port, associations=2, retry=OUTAGE_RETRY)
    setup.dicom("archive", archive_port, associations=2, retry=OUTAGE_RETRY)
    setup.forward_all("pacs", "archive")
    setup.write()
    router = routers.start(setup)

    stream = Stream(router.port, sent, tmp_path, batch=20, hold_after=2).start()  # waits after 40
    before = tmp_path / "pacs-before"
    assert wait_until(lambda: count_files(before) >= 20, STREAM_TIMEOUT), router.output()
    stop_storescp(pacs)  # down mid-stream, its open associations with it
    down_at = time.monotonic()
    assert stream.is_running(), "the PACS went down after the stream ended"
    stream.release()
    acknowledged = stream.join(STREAM_TIMEOUT).acknowledged
    assert sorted(acknowledged) == sorted(uids_of(sent))

    # Everything reaches the archive, exactly once, while the PACS is still down: it did not wait for the PACS.
    assert arrivals(tmp_path / "archive", originals, acknowledged, ARRIVAL_TIMEOUT) == Counter(acknowledged)
    with closing(Queue(setup.spool)) as queue:
        assert queue.list_jobs(failed_only=True) == []  # the PACS's jobs wait; none was given up
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
    start_storescp(tmp_path, pacs_port, tmp_path / "pacs-after", peers.peers)

    held_before = originals.held(before)  # a file cut short by the crash does not count
    after = arrivals(tmp_path / "pacs-after", originals, set(acknowledged) - set(held_before), ARRIVAL_TIMEOUT)
    assert set(held_before) | set(after) == set(acknowledged)
    assert "retry scheduled" in router.output()


# ---- 4. kill -9 of the whole router ------------------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.timeout(180)
def test_kill_9_of_the_whole_router_then_a_new_run_delivers_every_acknowledged_instance(
    sent, originals, root, peers, routers, tmp_path
):
    pacs_port, pacs_out = pick_free_port(), tmp_path / "pacs"
    start_storescp(tmp_path, pacs_port, pacs_out, peers.peers)
    setup = router_setup(root, pick_free_port())
    setup.dicom("pacs", pacs_port, associations=2)
    setup.forward_all("pacs")
    setup.write()
    router = routers.start(setup)

    stream = Stream(router.port, sent, tmp_path, batch=10).start()
    assert wait_until(lambda: stream.acknowledged_count() >= 150, STREAM_TIMEOUT), stream.outputs
    router.kill_all()
    killed_at = time.monotonic()
    stream.stop()
    acknowledged = stream.join(STREAM_TIMEOUT).acknowledged
    assert len(acknowledged) < SENT, "killed after the stream ended"
    # Announcements the killed processes held are gone; a starting worker's scan records the files
    # older than its grace period, so the next run starts once every accepted file is that old.
    time.sleep(max(0.0, Timing().scan_grace + 0.5 - (time.monotonic() - killed_at)))
    routers.start(setup)

    arrivals(pacs_out, originals, acknowledged, ARRIVAL_TIMEOUT)
    with closing(Queue(setup.spool)) as queue:
        assert wait_until(lambda: queue.list_jobs() == [], ARRIVAL_TIMEOUT), queue.list_jobs()[:3]


# ---- 5. a destination that refuses the SOP class --------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.timeout(120)
def test_a_refused_sop_class_is_dead_with_the_reason_and_retried_once_the_destination_is_fixed(
    sent, originals, root, peers, routers, tmp_path
):
    ct = sent[:10]
    mr = instances(tmp_path / "mr", 2, kind=store_data.TYPICAL)
    pacs_port = pick_free_port()
    mr_only = exact_contexts_config(tmp_path / "mr-only.cfg", mr)
    pacs = start_storescp(tmp_path, pacs_port, tmp_path / "pacs-mr-only", peers.peers, accepted=("-xf", *mr_only))
    setup = router_setup(root, pick_free_port(), listeners=1, workers=1)
    setup.dicom("pacs", pacs_port)
    setup.forward_all("pacs")
    config = str(setup.write())
    router = routers.start(setup)

    assert sorted(send(router.port, ct + mr, tmp_path).acknowledged) == sorted(uids_of(ct + mr))
    assert arrivals(tmp_path / "pacs-mr-only", Originals(mr), uids_of(mr), ARRIVAL_TIMEOUT) == Counter(uids_of(mr))
    with closing(Queue(setup.spool)) as queue:
        assert wait_until(lambda: len(queue.list_jobs(failed_only=True)) == len(ct), ARRIVAL_TIMEOUT), router.output()
    listed = router_cli("queue", "list", "--failed", "-c", config)
    assert listed.returncode == 0 and f"{len(ct)} job(s)" in listed.output, listed.output
    dead = [line for line in listed.output.splitlines() if " dead " in line]
    assert {uid for uid in uids_of(ct) if any(uid in line for line in dead)} == set(uids_of(ct)), listed.output
    assert all("refuses CT Image Storage" in line for line in dead), listed.output

    stop_storescp(pacs)
    start_storescp(tmp_path, pacs_port, tmp_path / "pacs-fixed", peers.peers)  # accepts every class now
    retried = router_cli("queue", "retry", "--all", "-c", config)
    assert retried.returncode == 0 and f"{len(ct)} job(s) queued again" in retried.output, retried.output

    assert arrivals(tmp_path / "pacs-fixed", originals, uids_of(ct), ARRIVAL_TIMEOUT) == Counter(uids_of(ct))
    assert router_cli("queue", "list", "--failed", "-c", config).output.strip().endswith("0 job(s)")


# ---- 6. a full spool ----------------------------------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.timeout(120)
def test_a_full_spool_answers_out_of_resources_and_loses_nothing_it_accepted(
    sent, originals, root, peers, routers, tmp_path
):
    pacs_port = pick_free_port()  # the destination is down at first: the spool fills up
    chosen = sent[:40]
    setup = router_setup(root, pick_free_port(), listeners=1, workers=1, spool_limit="150kB")
    setup.dicom("pacs", pacs_port)
    setup.forward_all("pacs")
    setup.write()
    router = routers.start(setup)

    responses = send(router.port, chosen, tmp_path)
    assert responses.acknowledged and responses.refused, responses
    assert set(responses.refused.values()) == {"Refused: OutOfResources"}
    assert sorted([*responses.acknowledged, *responses.refused]) == sorted(uids_of(chosen))
    assert "refused: out of resources" in router.output()

    start_storescp(tmp_path, pacs_port, tmp_path / "pacs", peers.peers)
    arrived = arrivals(tmp_path / "pacs", originals, responses.acknowledged, ARRIVAL_TIMEOUT)
    assert arrived == Counter(responses.acknowledged)  # nothing refused was kept, nothing accepted lost
    assert wait_until(lambda: not list(setup.spool.accepted()), ARRIVAL_TIMEOUT)
    time.sleep(USAGE_REFRESH_INTERVAL)  # the listener re-reads the spool's size at this pace
    again = [instance for instance in chosen if instance.sop_instance_uid in responses.refused][:5]
    assert sorted(send(router.port, again, tmp_path).acknowledged) == sorted(uids_of(again))  # room again
