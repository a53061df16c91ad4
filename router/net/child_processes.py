"""Associations served in child processes of their own (`start_server(..., forking=True)`).

A server in this mode forks once per accepted connection, as DCMTK's
`storescp --fork` does: the child serves that one association on its main
thread and exits, so associations run on every core instead of sharing one
interpreter. The parent only accepts. It watches each child through a pidfd
(Linux 5.3+) registered in its accept loop's selector and reaps it the moment
it exits: no signal handler, no polling.

What a child does stays in the child: event handlers run there, and handlers
bound after the server started reach only the children forked after that.
A child knows how many of its siblings were alive when it was forked, and
counts them against the AE's association limit. It closes its copies of the
sockets it does not serve (the server's own, the AE's other servers' and its
requestor associations'), so that a socket the parent closes closes for good.

SIGTERM to a child aborts its association (A-ABORT to the peer) and ends it;
`shutdown` sends that to every child, `drain` first waits for them.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence

LOGGER = logging.getLogger("router.net")
CHILD_FAILED = 1


def forking_supported() -> bool:
    """True where children can be watched through pidfds (Linux with Python 3.9+)."""
    return hasattr(os, "fork") and hasattr(os, "pidfd_open")


class Children:
    """The live children of a forking server, each with the pidfd that says when it has ended."""

    def __init__(self) -> None:
        self._pidfds: dict[int, int] = {}  # pid -> pidfd
        self._lock = threading.Lock()  # the accept loop and a drain may reap at the same time

    def __len__(self) -> int:
        return len(self._pidfds)

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return list(self._pidfds)

    def spawn(
        self, serve: Callable[[], None], close_in_child: Iterable, locks: Sequence[threading.Lock] = ()
    ) -> tuple[int, int]:
        """Fork a child that closes `close_in_child` (objects with .close()), runs `serve` and exits.

        `locks` are held across the fork, so that no other thread of the parent is halfway
        through what they guard when the child's copy is taken. Returns the child's pid and
        pidfd to the parent; never returns in the child.
        """
        _flush_standard_streams()  # else what they buffer would be written twice, by both processes
        for lock in locks:
            lock.acquire()
        try:
            pid = os.fork()
        finally:
            for lock in reversed(locks):
                lock.release()
        if pid == 0:
            _run_child(serve, close_in_child, self._pidfds.values())
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # e.g. out of file descriptors: a child we could not watch must not run
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
        with self._lock:
            self._pidfds[pid] = pidfd
        return pid, pidfd

    def reap(self, pid: int) -> None:
        """Collect the child `pid`, whose pidfd has become readable (it has exited)."""
        with self._lock:
            pidfd = self._pidfds.pop(pid, None)
            if pidfd is None:
                return  # reaped by the other thread
            os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # collected elsewhere (SIGCHLD set to be ignored)
            return
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, -signal.SIGTERM):
            LOGGER.warning(f"The association process {pid} ended with status {code}")

    def wait(self, timeout: float) -> bool:
        """Reap children as they exit, for up to `timeout` s; True if none is left."""
        deadline = time.monotonic() + timeout
        while self._pidfds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._lock:
                by_fd = {pidfd: pid for pid, pidfd in self._pidfds.items()}
            try:
                ready, _, _ = select.select(list(by_fd), [], [], remaining)
            except OSError:  # a pidfd closed by the accept loop meanwhile: look again
                continue
            for pidfd in ready:
                self.reap(by_fd[pidfd])
        return True

    def terminate(self) -> None:
        """Ask every child to abort its association and exit (SIGTERM)."""
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        with self._lock:
            for pidfd in self._pidfds.values():
                try:
                    signal.pidfd_send_signal(pidfd, signum)
                except ProcessLookupError:  # already exited, not yet reaped
                    pass

    def kill(self) -> None:
        """End every child still there at once, and reap it."""
        self._signal(signal.SIGKILL)
        for pid in self.pids:
            self.reap(pid)


def _run_child(serve: Callable[[], None], close_in_child: Iterable, siblings: Iterable[int]) -> None:
    """The child's whole life: never returns, whatever `serve` does."""
    code = CHILD_FAILED
    try:
        for pidfd in siblings:
            os.close(pidfd)
        for resource in close_in_child:
            resource.close()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C in a terminal ends the children with the parent
        serve()
        code = 0
    except BaseException:
        LOGGER.exception("the association process failed")
    finally:
        _flush_standard_streams()
        os._exit(code)


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or replaced by an object without flush
            pass
