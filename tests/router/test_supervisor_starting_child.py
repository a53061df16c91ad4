"""A signal for a child the supervisor is starting is that child's, not the supervisor's.

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
# `router run` whose children sleep between fork and exec, so that a test can signal one there.
SLOW_EXEC = textwrap.dedent(f"""
    import sys, time
    import router.supervisor as supervisor
    from router.cli import main

    before_exec = supervisor._die_with_parent

    def slow_before_exec():
        time.sleep({FORK_TO_EXEC})
        before_exec()

    supervisor._die_with_parent = slow_before_exec
    main(["run", sys.argv[1]])
""")


class SlowExecRouter(RouterRun):
    def start(self) -> SlowExecRouter:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", SLOW_EXEC, str(self.setup.path)], stdin=subprocess.DEVNULL, stdout=log,
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


@pytest.mark.timeout(120)
def test_sigterm_to_a_child_between_fork_and_exec_ends_that_child_not_the_router(root, tmp_path):
    setup = router_setup(root, pick_free_port(), listeners=1, workers=1)
    setup.folder("archive")
    setup.forward_all("archive")
    setup.write()
    router = SlowExecRouter(setup, tmp_path / "router.log")
    try:
        router.start()
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
    finally:
        router.close()
