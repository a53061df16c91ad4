"""The listener process: real `python -m router.listener` processes on loopback, DCMTK and our apps as senders.

A test PULL socket bound at worker 0's endpoint stands in for the workers, so
each test sees exactly what a worker would be told. Checked: every accepted
instance is in incoming/ bit for bit as sent and announced once with the right
fields; two listeners share one port; calling AE titles are enforced; a full
spool answers 0xA700 and keeps nothing; SIGTERM lets an open association
finish; SIGHUP with a broken file keeps serving; no worker up loses nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import yaml
import zmq

from router.bus import InstanceAccepted, decode, receiver, worker_endpoints
from router.listener import SpoolFull, SpoolUsage
from router.net import AE
from router.net.status import OUT_OF_RESOURCES, SUCCESS
from router.spool import Spool
from tests.conftest import LOOPBACK, Peer, is_listening, our_app, peer_environment, pick_free_port, wait_until
from tests.interop import store_data
from tests.interop.store_data import JPEG, LARGE, SMALL, TYPICAL, Instance
from tests.interop.test_store_dcmtk import DCMTK_STORED, assert_stored_as_sent, dcmtk_storescu, exact_contexts_config

STARTED = "listening on"
BUS_TIMEOUT = 10.0  # seconds for one announcement to arrive
QUIET_TIME = 0.5  # seconds without one more announcement: there is none
EXIT_TIMEOUT = 15.0
TRANSFER_TIMEOUT = 120.0


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def root():
    """A short directory for config and spool: ipc:// paths must stay under the socket path limit."""
    path = Path(tempfile.mkdtemp(prefix="rl-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return store_data.library(tmp_path_factory)


class WorkerEndpoint:
    """Worker 0's PULL endpoint, bound by the test: what the workers would receive."""

    def __init__(self, spool_root: Path) -> None:
        spool = Spool(spool_root)
        spool.create()
        self.endpoint = worker_endpoints(spool.bus, None, 1)[0]
        self.context = zmq.Context()
        self.socket = None

    def bind(self) -> None:
        self.socket = receiver(self.context, self.endpoint)

    def take(self, count: int, timeout: float = BUS_TIMEOUT) -> list[InstanceAccepted]:
        messages = []
        while len(messages) < count and self.socket.poll(int(timeout * 1000)):
            messages.append(decode(self.socket.recv()))
        return messages

    def take_exactly(self, count: int) -> list[InstanceAccepted]:
        """`count` announcements, and no more within QUIET_TIME."""
        messages = self.take(count)
        assert len(messages) == count, messages
        assert self.take(1, timeout=QUIET_TIME) == [], "more announcements than instances"
        return messages

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
        self.context.term()


@pytest.fixture
def bus(root):
    endpoint = WorkerEndpoint(root / "spool")
    endpoint.bind()
    try:
        yield endpoint
    finally:
        endpoint.close()


def write_config(root: Path, port: int, **router) -> Path:
    settings = {"listen": f"{LOOPBACK}:{port}", "listeners": 1, "workers": 1, "spool": str(root / "spool"), **router}
    document = {
        "router": settings,
        "destinations": {"out": {"folder": str(root / "out")}},
        "rules": [{"name": "everything", "forward": ["out"]}],
    }
    path = root / "router.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def listener_command(config: Path, index: int = 0, *options: str) -> list[str]:
    return [sys.executable, "-m", "router.listener", str(config), "--index", str(index), *options]


def start_listener(peers, root: Path, *options: str, **router) -> tuple[Peer, Path]:
    """A listener on a free port with `router` settings; returns it and its config file."""
    config = {}

    def command(port: int) -> list[str]:
        config["path"] = write_config(root, port, **router)
        return listener_command(config["path"], 0, *options)

    listener = peers.start("listener", command)
    assert listener.wait_for_output(STARTED, 10), listener.output()
    return listener, config["path"]


def exits(peer: Peer, timeout: float = EXIT_TIMEOUT) -> int:
    return peer.process.wait(timeout)


def incoming(root: Path) -> list[Path]:
    return sorted(Spool(root / "spool").incoming.iterdir())


def storage_ae(instances: list[Instance], title: str = "OURSCU") -> AE:
    ae = AE(title)
    for instance in instances:
        ae.add_requested_context(instance.sop_class_uid, [instance.transfer_syntax])
    ae.acse_timeout = ae.dimse_timeout = 10
    ae.connection_timeout = 5
    return ae


def echo(client, port: int, calling: str):
    return client(["echoscu", "-v", "-aet", calling, "-aec", "ROUTER", LOOPBACK, str(port)])


# ---- the spool's size accounting (in memory) ------------------------------------------------------
def test_spool_usage_counts_claims_and_rereads_the_directory(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"x" * 600)
    usage = SpoolUsage(tmp_path, interval=3600)
    usage.claim(300, limit=1000)  # 600 on disk + 300
    with pytest.raises(SpoolFull, match=r"spool full \(900 bytes of 1000\)"):
        usage.claim(101, limit=1000)
    usage.release(300)
    usage.claim(400, limit=1000)
    (tmp_path / "a.dcm").unlink()  # a worker delivered it: seen at the next re-read only
    with pytest.raises(SpoolFull):
        usage.claim(1, limit=1000)
    usage.interval = 0
    usage.claim(1000, limit=1000)
    usage.claim(10**9, limit=None)  # no limit: always taken


# ---- one listener, real senders --------------------------------------------------------------------
@pytest.mark.dcmtk
@pytest.mark.timeout(240)
def test_instances_are_spooled_bit_for_bit_and_announced(library, peers, client, bus, root, tmp_path):
    dcmtk_sent = library.get("explicit", (SMALL, TYPICAL)) + library.get(JPEG) + library.get("deflated", (SMALL,))
    ours_sent = library.get("implicit", (SMALL, LARGE))  # the large one is spooled in tmp/ and renamed
    listener, _ = start_listener(peers, root)

    dcmtk_storescu(tmp_path, listener.port, dcmtk_sent, client)
    result = client(
        our_app("storescu", LOOPBACK, str(listener.port), *(str(i.path) for i in ours_sent), "-aet", "OURSCU", "-aec", "ROUTER",
                "-d", "--async-ops", "8"),
        timeout=TRANSFER_TIMEOUT,
    )
    assert result.returncode == 0, result.output
    assert "Accepted Asynchronous Operations Window Negotiation: invoked 8, performed 1" in result.output

    sent = dcmtk_sent + ours_sent
    messages = {message.sop_instance_uid: message for message in bus.take_exactly(len(sent))}
    assert sorted(messages) == sorted(instance.sop_instance_uid for instance in sent)
    spool = Spool(root / "spool")
    for instance in sent:
        message = messages[instance.sop_instance_uid]
        stored = spool.path_of(message.name)
        assert_stored_as_sent(instance, stored)
        calling, called = ("DCMTKSCU", "STORESCP") if instance in dcmtk_sent else ("OURSCU", "ROUTER")
        assert (message.sop_class_uid, message.transfer_syntax) == (instance.sop_class_uid, instance.transfer_syntax)
        assert (message.calling_ae, message.called_ae, message.peer_address) == (calling, called, LOOPBACK)
        assert message.size == stored.stat().st_size
        assert message.name.startswith(instance.sop_instance_uid + ".")
    assert len(incoming(root)) == len(sent)
    assert list((spool.tmp / "listener-0").iterdir()) == []
    for instance in sent:  # one log line per instance, with what an operator needs
        line = next(line for line in listener.output().splitlines() if f"sop_instance_uid={instance.sop_instance_uid}" in line)
        assert " INFO listener-0: received " in line and f"transfer_syntax={instance.transfer_syntax}" in line
        assert "from=DCMTKSCU@127.0.0.1" in line or "from=OURSCU@127.0.0.1" in line
        assert " size=" in line and " ms=" in line


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom's, for the private class's leading zero
def test_private_and_newer_storage_classes_are_accepted_and_announced(peers, client, bus, root, tmp_path):
    sent = store_data.unlisted_class_files(tmp_path / "unlisted")
    listener, _ = start_listener(peers, root)

    result = client(our_app("storescu", LOOPBACK, str(listener.port), "-cx", "-aec", "ROUTER", *(str(i.path) for i in sent)))

    assert result.returncode == 0, result.output
    messages = {message.sop_instance_uid: message for message in bus.take_exactly(len(sent))}
    for instance in sent:
        assert messages[instance.sop_instance_uid].sop_class_uid == instance.sop_class_uid
        assert_stored_as_sent(instance, Spool(root / "spool").path_of(messages[instance.sop_instance_uid].name))


def send_one_association(port: int, instance: Instance, statuses: list[int]) -> None:
    ae = storage_ae([instance])
    assoc = ae.associate(LOOPBACK, port, ae_title="ROUTER")
    assert assoc.is_established
    statuses.append(assoc.send_c_store(instance.path).Status)
    assoc.release()


@pytest.mark.dcmtk
def test_two_listeners_share_one_port(library, peers, bus, root, tmp_path):
    instance = library.get("explicit", (SMALL,))[0]
    first, config = start_listener(peers, root)
    log = root / "listener-1.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            listener_command(config, 1), stdout=output, stderr=subprocess.STDOUT, env=peer_environment()
        )
    second = Peer("listener-1", first.port, process, log)
    peers.peers.append(second)
    assert second.wait_for_output(STARTED, 10), second.output()

    contexts, profile = exact_contexts_config(tmp_path / "storescu.cfg", [instance])
    command = ["storescu", "-v", "-aet", "DCMTKSCU", "-xf", contexts, profile, LOOPBACK, str(first.port), str(instance.path)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    try:
        statuses: list[int] = []
        senders = [threading.Thread(target=send_one_association, args=(first.port, instance, statuses)) for _ in range(16)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(60)
        outputs = [run.communicate(timeout=60)[0].decode() for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait(5)

    assert statuses == [SUCCESS] * 16
    assert all(output.count(DCMTK_STORED) == 1 for output in outputs), outputs
    bus.take_exactly(20)
    assert len(incoming(root)) == 20
    assert "received" in first.output() and "received" in second.output(), "the kernel gave every association to one"


@pytest.mark.dcmtk
def test_a_calling_ae_not_allowed_is_rejected(peers, client, bus, root):
    listener, _ = start_listener(peers, root, allowed_calling_ae=["CT1"])

    refused = echo(client, listener.port, "INTRUDER")
    allowed = echo(client, listener.port, "CT1")

    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.output, refused.output
    assert allowed.returncode == 0, allowed.output
    assert listener.wait_for_output("association rejected from=INTRUDER@127.0.0.1 reason=calling-AE-title-not-recognized")


@pytest.mark.dcmtk
def test_a_full_spool_answers_out_of_resources_and_keeps_nothing(library, peers, client, bus, root, tmp_path):
    instances = library.get("explicit", (SMALL, TYPICAL))  # ~10 KB, then ~0.5 MB
    listener, _ = start_listener(peers, root, spool_limit="100kB")

    config, profile = exact_contexts_config(tmp_path / "storescu.cfg", instances)
    result = client(["storescu", "-v", "-nh", "-aet", "CT1", "-xf", config, profile, LOOPBACK, str(listener.port),
                     *(str(i.path) for i in instances)])
    ae = storage_ae(instances[1:])
    assoc = ae.associate(LOOPBACK, listener.port, ae_title="ROUTER")
    answer = assoc.send_c_store(instances[1].path)
    assoc.release()

    assert result.output.count("Received Store Response (Success)") == 1, result.output
    assert "Received Store Response (Refused: OutOfResources)" in result.output, result.output
    assert answer.Status == OUT_OF_RESOURCES
    assert answer.ErrorComment.startswith("spool full (") and answer.ErrorComment.endswith(" bytes of 100000)")
    assert [message.sop_instance_uid for message in bus.take_exactly(1)] == [instances[0].sop_instance_uid]
    [kept] = incoming(root)
    assert kept.name.startswith(instances[0].sop_instance_uid + ".")
    assert list((Spool(root / "spool").tmp / "listener-0").iterdir()) == []
    assert "refused: out of resources" in listener.output()
    assert echo(client, listener.port, "CT1").returncode == 0  # still serving


def test_an_unwritable_spool_answers_out_of_resources_and_keeps_serving(library, peers, bus, root):
    instances = library.get("implicit", (SMALL, LARGE))  # in memory, and spooled to tmp/ on the way in
    listener, _ = start_listener(peers, root)
    spool = Spool(root / "spool")
    spool.incoming.rmdir()
    spool.incoming.write_bytes(b"")  # incoming/ is now a plain file: every save fails
    ae = storage_ae(instances)
    assoc = ae.associate(LOOPBACK, listener.port, ae_title="ROUTER")
    answers = [assoc.send_c_store(instance.path) for instance in instances]
    spool.incoming.unlink()
    spool.incoming.mkdir()
    recovered = assoc.send_c_store(instances[0].path).Status
    assoc.release()

    assert [answer.Status for answer in answers] == [OUT_OF_RESOURCES] * 2
    assert all(answer.ErrorComment == "cannot write the spool: Not a directory" for answer in answers), answers
    assert recovered == SUCCESS
    assert [message.name for message in bus.take_exactly(1)] == [path.name for path in incoming(root)]
    assert list((spool.tmp / "listener-0").iterdir()) == []


# ---- signals ------------------------------------------------------------------------------------
def test_sigterm_lets_an_open_association_finish_then_exits_0(library, peers, bus, root):
    instance = library.get("explicit", (SMALL,))[0]
    listener, _ = start_listener(peers, root)
    ae = storage_ae([instance])
    assoc = ae.associate(LOOPBACK, listener.port, ae_title="ROUTER")
    assert assoc.is_established

    os.kill(listener.pid, signal.SIGTERM)
    assert wait_until(lambda: not is_listening(listener.port), 5), "still accepting new associations"
    status = assoc.send_c_store(instance.path).Status
    assoc.release()

    assert status == SUCCESS
    assert exits(listener) == 0, listener.output()
    assert [message.sop_instance_uid for message in bus.take_exactly(1)] == [instance.sop_instance_uid]
    assert len(incoming(root)) == 1
    assert listener.output().rstrip().endswith("stopped"), listener.output()


@pytest.mark.dcmtk
def test_sighup_reloads_and_a_broken_file_keeps_the_old_config(peers, client, bus, root):
    listener, config = start_listener(peers, root)
    good = config.read_text()

    config.write_text("router: [unclosed\n")
    os.kill(listener.pid, signal.SIGHUP)
    assert listener.wait_for_output("config reload refused, the old config stays:"), listener.output()
    assert echo(client, listener.port, "CT1").returncode == 0

    changed = yaml.safe_load(good)
    changed["router"].update(allowed_calling_ae=["OTHER"], ae_title="NEWNAME")
    config.write_text(yaml.safe_dump(changed))
    os.kill(listener.pid, signal.SIGHUP)
    assert listener.wait_for_output("config reloaded; ae_title change(s) only with a restart"), listener.output()
    assert echo(client, listener.port, "CT1").returncode != 0
    assert echo(client, listener.port, "OTHER").returncode == 0
    assert listener.is_running()


# ---- no worker up ------------------------------------------------------------------------------------
def test_no_worker_up_the_store_succeeds_and_waits_in_incoming(library, peers, root):
    instance = library.get("explicit", (SMALL,))[0]
    late_bus = WorkerEndpoint(root / "spool")
    spool = Spool(root / "spool")
    leftovers = [spool.tmp / "listener-0" / "partial.part", spool.tmp / "listener-1" / "receiving.part"]
    for path in leftovers:  # a killed listener-0's partial reception; a live sibling's
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    try:
        listener, _ = start_listener(peers, root, "--log-json", durability="none")
        assert not leftovers[0].exists() and leftovers[1].exists()
        ae = storage_ae([instance])
        assoc = ae.associate(LOOPBACK, listener.port, ae_title="ROUTER")
        status = assoc.send_c_store(instance.path).Status
        assoc.release()

        assert status == SUCCESS
        [stored] = incoming(root)
        assert_stored_as_sent(instance, stored)
        late_bus.bind()  # a worker comes up: the queued announcement reaches it
        assert [message.name for message in late_bus.take_exactly(1)] == [stored.name]
    finally:
        late_bus.close()
    assert wait_until(lambda: '"message": "received"' in listener.output(), 5)
    records = [json.loads(line) for line in listener.output().splitlines() if line.startswith("{")]
    [received] = [record for record in records if record["message"] == "received"]
    assert received["process"] == "listener-0" and received["level"] == "INFO"
    assert (received["sop_instance_uid"], received["from"]) == (instance.sop_instance_uid, "OURSCU@127.0.0.1")
    assert received["size"] == stored.stat().st_size and received["file"] == stored.name


# ---- refusing to start ---------------------------------------------------------------------------------
def test_a_bad_config_or_a_taken_port_exits_non_zero_with_the_reason(root):
    bad = root / "bad.yml"
    bad.write_text("router: {listen: nowhere}\nrules: []\n")
    result = subprocess.run(listener_command(bad), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot start, the config has problems:" in result.stderr and "listen must be 'host:port'" in result.stderr

    port = pick_free_port()
    with socket.create_server((LOOPBACK, port)):  # held without SO_REUSEPORT
        result = subprocess.run(listener_command(write_config(root, port)), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"cannot start on {LOOPBACK}:{port}" in result.stderr and "Address already in use" in result.stderr
