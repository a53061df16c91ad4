"""Starting a child: a signal for it is its own, not the supervisor's; a start that fails is retried.

Between fork and exec the child is a copy of the supervisor: its signal
handlers and the wake-up socket they write to are the supervisor's. The
supervisor here widens that window (its pre-exec step sleeps), the test sends
SIGTERM to the child caught in it, and the router must go on: the child ends
by that SIGTERM and is restarted; the supervisor does not take it for its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, peer_environment, pick_free_port, wait_until
from tests.router import test_listener
from tests.router.routing import RESTART_TIMEOUT, RouterRun, router_setup

root = test_listener.root  # a fixture: a short directory for config and spool (ipc:// path limit)

FORK_TO_EXEC = 1.0  # seconds each child spends between fork and exec
CAUGHT_TIMEOUT = 10.0
MISSING_EXECUTABLE = "/nonexistent/router-child"
# `router run` with the supervisor patched, by mode: "slow-exec", each child sleeps between fork and
# exec, so that a test can signal one there; "first-restart-fails", the first child started after the
# first start of them all cannot be (its executable does not exist), as when fork or exec fails.
PATCHED_RUN = textwrap.dedent(f"""
    import sys, time
    import router.supervisor as supervisor
    from router.cli import main

    mode, config = sys.argv[1], sys.argv[2]
    if mode == "slow-exec":
        before_exec = supervisor._before_exec

        def slow_before_exec(*args):
            time.sleep({FORK_TO_EXEC})
            before_exec(*args)

        supervisor._before_exec = slow_before_exec
    else:
        command = supervisor.Supervisor._command
        started = []

        def command_once_missing(self, child):
            started.append(child.name)
            return [MISSING_EXECUTABLE] if len(started) == len(self.children) + 1 else command(self, child)

        supervisor.Supervisor._command = command_once_missing
    main(["run", config])
""").replace("MISSING_EXECUTABLE", repr(MISSING_EXECUTABLE))


class PatchedRouter(RouterRun):
    def __init__(self, mode: str, *args) -> None:
        super().__init__(*args)
        self.mode = mode

    def start(self) -> PatchedRouter:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", PATCHED_RUN, self.mode, str(self.setup.path)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=peer_environment(), start_new_session=True,
            )
        self.wait_ready()
        return self

    def not_yet_executed(self) -> list[int]:
        """The supervisor's children that are still copies of it (forked, not yet exec'd)."""
        assert self.process is not None
        supervisor = self.process.pid
        command = Path(f"/proc/{supervisor}/cmdline").read_bytes()
        found = []
        for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == command:
                    found.append(int(pid))
            except OSError:
                continue  # gone meanwhile
        return found


@pytest.fixture
def patched_router(root, tmp_path):
    """`patched_router(mode)`: a started PatchedRouter (one listener, one worker), closed at teardown."""
    started = []

    def start(mode: str) -> PatchedRouter:
        setup = router_setup(root, pick_free_port(), listeners=1, workers=1)
        setup.folder("archive")
        setup.forward_all("archive")
        setup.write()
        started.append(PatchedRouter(mode, setup, tmp_path / "router.log"))
        return started[-1].start()

    yield start
    for router in started:
        router.close()


@pytest.mark.timeout(120)
def test_sigterm_to_a_child_between_fork_and_exec_ends_that_child_not_the_router(patched_router):
    router = patched_router("slow-exec")
    old = router.kill_child("worker-0")
    assert wait_until(router.not_yet_executed, CAUGHT_TIMEOUT, 0.005), router.output()
    starting = router.not_yet_executed()[0]
    os.kill(starting, signal.SIGTERM)

    ended = f"worker-0 (pid {starting}) exited with signal SIGTERM"
    assert wait_until(lambda: ended in router.output(), RESTART_TIMEOUT), router.output()
    # The child that never reached exec never said it was up: one start line for two restarts.
    restarted = lambda: router.pid_of("worker-0") not in (old, starting) and router.starts("worker-0") == 2  # noqa: E731
    assert wait_until(restarted, RESTART_TIMEOUT), router.output()
    assert router.process.poll() is None and "stopping" not in router.output(), router.output()


@pytest.mark.timeout(120)
def test_a_child_that_cannot_be_started_is_tried_again_and_the_router_goes_on(patched_router):
    router = patched_router("first-restart-fails")
    old = router.kill_child("worker-0")

    failed = f"worker-0 could not be started ([Errno 2] No such file or directory: '{MISSING_EXECUTABLE}'); restarting in"
    assert wait_until(lambda: failed in router.output(), RESTART_TIMEOUT), router.output()
    restarted = lambda: router.pid_of("worker-0") != old and router.starts("worker-0") == 2  # noqa: E731
    assert wait_until(restarted, RESTART_TIMEOUT), router.output()
    router.wait_ready()
    assert router.process.poll() is None and "Traceback" not in router.output(), router.output()
