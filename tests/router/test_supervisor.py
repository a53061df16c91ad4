"""The supervisor and the operator commands, on the whole router: `router run`, `check`, `status`, signals.

Each test runs `router run` as a process (tests/router/routing.py) with its
listeners and workers, DCMTK storescu as the modality, and a DCMTK storescp
or a folder as the destination. Checked: `router check` reports every
problem of a bad file and exits 1; `router status` shows the processes and
the per-destination counts; a second router on the same spool exits 2, on the same port 4, one
whose spool cannot be made 3; SIGHUP
with a broken file keeps everything running on the old config, and a good one
reaches every child; SIGTERM mid-stream exits 0 in bounded time and every
acknowledged instance is delivered exactly once; kill -9 of the supervisor
alone takes its children with it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from contextlib import closing

import pytest
import yaml

from tests.conftest import LOOPBACK, pick_free_port, wait_until
from tests.interop.store_data import Instance
from tests.router import routing, test_listener
from tests.router.routing import STOP_TIMEOUT, Originals, Stream, arrivals, is_alive, router_cli, router_setup, send
from tests.workers.harness import instances, received, start_storescp
from workers.queue import Queue

root = test_listener.root  # a fixture: a short directory for config and spool (ipc:// path limit)
routers = routing.routers  # a fixture: `routers.start(setup)`, all stopped at teardown

pytestmark = pytest.mark.timeout(120)

ARRIVAL_TIMEOUT = 30.0
STREAM_TIMEOUT = 60.0
SIGTERM_BOUND = 20.0  # open associations finish (a batch of 10 small instances), then in-flight deliveries
EXIT_IN_USE = 2
EXIT_SPOOL_UNUSABLE = 3
EXIT_LISTEN_UNAVAILABLE = 4


@pytest.fixture(scope="module")
def sent(tmp_path_factory) -> list[Instance]:
    return instances(tmp_path_factory.mktemp("supervisor-data"), 300)


@pytest.fixture(scope="module")
def originals(sent) -> Originals:
    return Originals(sent)


def uids_of(chosen: list[Instance]) -> list[str]:
    return [instance.sop_instance_uid for instance in chosen]


def columns(output: str, first: str) -> list[str]:
    """The whitespace-separated fields of the output line that starts with `first`."""
    line = next((line for line in output.splitlines() if line.split()[:1] == [first]), None)
    assert line is not None, f"no '{first}' line in:\n{output}"
    return line.split()


# ---- router check -------------------------------------------------------------------------------------
def test_check_reports_every_problem_with_its_line_and_exits_1(root):
    bad = root / "bad.yml"
    bad.write_text(
        "router:\n  listen: nowhere\n  colour: blue\n"
        "destinations:\n  pacs: {address: 127.0.0.1:104}\n"
        "rules:\n  - name: everything\n    forward: [ghost]\n"
    )
    result = router_cli("check", str(bad))

    assert result.returncode == 1, result.output
    assert f"{bad}:2:11: listen must be 'host:port'" in result.output
    assert f"{bad}:3:3: unknown key 'colour' in router" in result.output
    assert f"{bad}:5:19: destination 'pacs' has no ae_title" in result.output
    assert f"{bad}:8:15: rule 'everything' forwards to unknown destination 'ghost'" in result.output
    assert f"{bad}: 4 problem(s)" in result.output
    assert "Traceback" not in result.output


# ---- router status, and one router per spool ------------------------------------------------------------
@pytest.mark.dcmtk
def test_status_shows_processes_and_counts_and_a_second_router_on_the_spool_exits_2(
    sent, originals, root, peers, routers, tmp_path
):
    pacs_port = pick_free_port()
    start_storescp(tmp_path, pacs_port, tmp_path / "pacs", peers.peers)
    setup = router_setup(root, pick_free_port())
    setup.dicom("pacs", pacs_port)
    setup.dicom("offline", pick_free_port())  # nothing listens there: its jobs wait
    setup.forward_all("pacs", "offline")
    config = str(setup.write())
    router = routers.start(setup)
    chosen = sent[:10]
    assert sorted(send(router.port, chosen, tmp_path).acknowledged) == sorted(uids_of(chosen))
    arrivals(tmp_path / "pacs", originals, uids_of(chosen), ARRIVAL_TIMEOUT)

    status = router_cli("status", "-c", config)
    assert status.returncode == 0, status.output
    assert status.output.startswith(f"router: running (spool {setup.spool.root})"), status.output
    for name, entry in router.processes().items():
        assert columns(status.output, name)[1:] == ["pid", str(entry["pid"]), "alive", "restarts", "0"], status.output
    # destination, queued, in flight, delivered, failed, oldest queued
    assert columns(status.output, "pacs")[1:6] == ["0", "0", "10", "0", "-"], status.output
    offline = columns(status.output, "offline")
    assert int(offline[1]) + int(offline[2]) == len(chosen) and offline[3:5] == ["0", "0"], status.output

    second = router_cli("run", config)
    assert second.returncode == EXIT_IN_USE, second.output
    assert f"another router already runs on the spool {setup.spool.root}" in second.output
    assert all(entry["alive"] for entry in router.processes().values()), "the second router disturbed the first"

    assert router.terminate() == 0
    stopped = router_cli("status", "-c", config)
    assert stopped.output.startswith("router: not running") and " down " in stopped.output, stopped.output


def test_a_second_router_on_the_same_port_exits_4_and_the_first_keeps_every_association(sent, root, routers, tmp_path):
    """Its listeners share the port (SO_REUSEPORT): a second router would quietly take half the
    associations into its own spool and rules. It is refused at start instead."""
    setup = router_setup(root, pick_free_port())
    archive = setup.folder("archive")
    setup.forward_all("archive")
    setup.write()
    router = routers.start(setup)
    other = router_setup(tmp_path / "other", router.port)
    other.directory.mkdir()
    other.folder("archive")
    other.forward_all("archive")

    second = router_cli("run", str(other.write()))

    assert second.returncode == EXIT_LISTEN_UNAVAILABLE, second.output
    assert f"cannot listen on {LOOPBACK}:{router.port}: Address already in use" in second.output
    chosen = sent[:6]
    assert sorted(send(router.port, chosen, tmp_path).acknowledged) == sorted(uids_of(chosen))
    assert wait_until(lambda: sorted(received(archive)) == sorted(uids_of(chosen)), ARRIVAL_TIMEOUT), router.output()


def test_a_port_another_program_holds_ends_the_router_at_once_with_4(root):
    """Not a listener restarted forever behind a router that looks up (a service manager sees it)."""
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        setup = router_setup(root, holder.getsockname()[1])
        setup.folder("archive")
        setup.forward_all("archive")
        result = router_cli("run", str(setup.write()))
    assert result.returncode == EXIT_LISTEN_UNAVAILABLE, result.output
    assert "Address already in use" in result.output and "Traceback" not in result.output


def test_a_spool_that_cannot_be_made_ends_the_router_with_3_and_says_where(root):
    blocker = root / "a-file"
    blocker.write_text("not a folder")
    setup = router_setup(root, pick_free_port(), spool=str(blocker / "spool"))
    setup.folder("archive")
    setup.forward_all("archive")
    setup.path.write_text(yaml.safe_dump({
        "router": {"ae_title": "ROUTER", "workers": 1, "listeners": 1, **setup.router},
        "destinations": setup.destinations, "rules": setup.rules,
    }, sort_keys=False))

    result = router_cli("run", str(setup.path))

    assert result.returncode == EXIT_SPOOL_UNUSABLE, result.output
    assert f"cannot use {blocker / 'spool'} as the spool: Not a directory" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command, kind", [("retry", "failed job"), ("purge", "job")])
def test_queue_commands_on_ids_that_name_no_job_exit_1_and_say_so(root, command, kind):
    setup = router_setup(root, pick_free_port())
    setup.folder("archive")
    setup.forward_all("archive")
    config = str(setup.write())
    Queue(setup.spool).close()  # the queue as a router that ran leaves it, without jobs
    result = router_cli("queue", command, "99998", "99999", "-c", config)
    assert result.returncode == 1, result.output
    assert f"2 of the IDs given name no {kind}" in result.output and "Traceback" not in result.output


def test_queue_commands_on_a_queue_that_cannot_be_opened_say_which_file_and_why(root):
    setup = router_setup(root, pick_free_port())
    setup.folder("archive")
    setup.forward_all("archive")
    config = str(setup.write())
    setup.spool.create()
    setup.spool.queue_path.mkdir()  # as unusable as a queue on a full disk: SQLite cannot open it
    result = router_cli("queue", "list", "-c", config)
    assert result.returncode == 1, result.output
    assert f"cannot write the queue {setup.spool.queue_path} (unable to open database file)" in result.output
    assert "Traceback" not in result.output


# ---- SIGHUP ---------------------------------------------------------------------------------------------
def test_sighup_with_a_broken_config_keeps_running_and_a_good_one_reaches_every_child(sent, root, routers, tmp_path):
    setup = router_setup(root, pick_free_port(), listeners=1, workers=1)
    first = setup.folder("first")
    setup.forward_all("first")
    config = setup.write()
    router = routers.start(setup)
    pids = {name: entry["pid"] for name, entry in router.processes().items()}
    good = config.read_text()
    one, two = sent[:2]

    config.write_text(good + "\nnonsense: [\n")
    os.kill(router.process.pid, signal.SIGHUP)
    assert wait_until(lambda: "keeping the running config" in router.output(), 10), router.output()
    assert send(router.port, [one], tmp_path).acknowledged == [one.sop_instance_uid]
    assert wait_until(lambda: received(first) == Counter([one.sop_instance_uid]), ARRIVAL_TIMEOUT), router.output()
    assert {name: entry["pid"] for name, entry in router.processes().items()} == pids
    assert "config reloaded" not in router.output(), "a broken config was passed on"

    changed = yaml.safe_load(good)
    changed["destinations"]["second"] = {"folder": "./second"}
    changed["rules"][0]["forward"] = ["first", "second"]
    config.write_text(yaml.safe_dump(changed))
    os.kill(router.process.pid, signal.SIGHUP)
    for line in ("supervisor: SIGHUP: config reloaded; passing it on", "listener-0: config reloaded", "worker-0: config reloaded"):
        assert wait_until(lambda: line in router.output(), 10), router.output()
    assert send(router.port, [two], tmp_path).acknowledged == [two.sop_instance_uid]
    assert wait_until(lambda: received(root / "second") == Counter([two.sop_instance_uid]), ARRIVAL_TIMEOUT), router.output()
    # Each destination has its own delivery thread: the first may get the instance after the second does.
    assert wait_until(lambda: received(first) == Counter(uids_of([one, two])), ARRIVAL_TIMEOUT), router.output()
    assert {name: entry["pid"] for name, entry in router.processes().items()} == pids  # nobody restarted


def test_saving_the_config_file_reloads_it_without_a_signal(sent, root, routers, tmp_path):
    setup = router_setup(root, pick_free_port(), listeners=1, workers=1)
    setup.folder("first")
    setup.forward_all("first")
    config = setup.write()
    router = routers.start(setup)
    changed = yaml.safe_load(config.read_text())
    changed["destinations"]["second"] = {"folder": "./second"}
    changed["rules"][0]["forward"] = ["second"]
    config.write_text(yaml.safe_dump(changed))
    for line in (f"supervisor: {config} changed", "worker-0: config reloaded"):
        assert wait_until(lambda: line in router.output(), 10), router.output()
    assert send(router.port, sent[:1], tmp_path).acknowledged == [sent[0].sop_instance_uid]
    assert wait_until(lambda: received(root / "second") == Counter(uids_of(sent[:1])), ARRIVAL_TIMEOUT), router.output()


# ---- SIGTERM --------------------------------------------------------------------------------------------
@pytest.mark.dcmtk
def test_sigterm_mid_stream_exits_0_in_bounded_time_and_every_acknowledged_instance_is_delivered_once(
    sent, originals, root, peers, routers, tmp_path
):
    pacs_port, later_port = pick_free_port(), pick_free_port()
    start_storescp(tmp_path, pacs_port, tmp_path / "pacs", peers.peers)
    setup = router_setup(root, pick_free_port())
    setup.dicom("pacs", pacs_port, associations=2)
    setup.dicom("later", later_port)  # down until the next run: its jobs are queued when the router stops
    setup.forward_all("pacs", "later")
    setup.write()
    router = routers.start(setup)
    children = [entry["pid"] for entry in router.processes().values()]

    stream = Stream(router.port, sent, tmp_path, batch=len(sent)).start()  # one association
    assert wait_until(lambda: stream.acknowledged_count() >= 50, STREAM_TIMEOUT), stream.outputs
    started = time.monotonic()
    assert router.terminate(STOP_TIMEOUT) == 0, router.output()
    stopped_in = time.monotonic() - started
    acknowledged = stream.join(STREAM_TIMEOUT).acknowledged

    assert sorted(acknowledged) == sorted(uids_of(sent)), "the open association was not let finish"
    assert stopped_in < SIGTERM_BOUND, f"stopping took {stopped_in:.1f} s"
    assert not any(map(is_alive, children))
    assert router.output().rstrip().endswith("router stopped"), router.output()[-2000:]
    delivered = originals.held(tmp_path / "pacs")
    with closing(Queue(setup.spool)) as queue:
        waiting = {(job.destination, job.sop_instance_uid) for job in queue.list_jobs()}
    for destination, arrived in (("pacs", delivered), ("later", Counter())):
        missing = [uid for uid in acknowledged if uid not in arrived and (destination, uid) not in waiting]
        assert not missing, f"{len(missing)} acknowledged instance(s) neither delivered to nor queued for {destination}"

    start_storescp(tmp_path, later_port, tmp_path / "later", peers.peers)
    routers.start(setup)  # what waits goes out with the next run, and nothing twice: there was no crash
    assert arrivals(tmp_path / "later", originals, acknowledged, ARRIVAL_TIMEOUT) == Counter(acknowledged)
    assert arrivals(tmp_path / "pacs", originals, acknowledged, ARRIVAL_TIMEOUT) == Counter(acknowledged)


# ---- kill -9 of the supervisor alone ---------------------------------------------------------------------------
def test_kill_9_of_the_supervisor_takes_its_children_with_it(root, routers):
    setup = router_setup(root, pick_free_port(), listeners=1, workers=1)
    setup.folder("archive")
    setup.forward_all("archive")
    setup.write()
    router = routers.start(setup)
    children = [entry["pid"] for entry in router.processes().values()]

    os.kill(router.process.pid, signal.SIGKILL)
    router.process.wait(10)

    assert wait_until(lambda: not any(map(is_alive, children)), 15), "children outlived their supervisor"
    assert routers.start(setup).process.poll() is None  # the spool's lock went with it
