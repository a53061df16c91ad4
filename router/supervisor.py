"""The supervisor: `router run` starts, watches, restarts, reloads and stops the router's processes.

It owns the process tree, nothing else: listeners (`python -m router.listener`)
and workers (`python -m workers`) are started by entry point as separate
processes. It waits on signals (SIGCHLD, SIGHUP, SIGTERM, SIGINT, through a
wake-up pipe) and on a slow timer for the config file:
- a child that dies is restarted after a back-off that doubles up to
  `MAX_RESTART_DELAY`, and starts again from `FIRST_RESTART_DELAY` once the
  child has stayed up for `STABLE_AFTER` seconds;
- SIGHUP re-reads the config, and so does saving the file (its modification
  time is looked at every `CONFIG_CHECK_INTERVAL` seconds): a file with
  problems is refused (they are logged) and everything goes on as before; a
  good one is passed on to every child with SIGHUP;
- SIGTERM or SIGINT stop the listeners first (they stop accepting and let open
  associations finish), then the workers (they finish in-flight deliveries);
  whoever outlives `STOP_TIMEOUT` is killed, and the supervisor exits 0.
Children die with the supervisor (PR_SET_PDEATHSIG), so a killed router never
leaves orphans that hold the port. A lock file keeps two routers off one
spool, and the router does not start when its spool cannot be made or its port is taken (by
anyone: its listeners share it, so a second router would quietly take half the associations).
`status.json` in the spool says which processes run and how often each
was restarted, for `router status`.
"""

from __future__ import annotations

import ctypes
import functools
import fcntl
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from router.config import Config, ConfigError, load_config
from router.spool import Spool

LOGGER = logging.getLogger("router.supervisor")
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0
STOP_TIMEOUT = 40.0  # listeners: 30 s to drain associations, plus margin
PR_SET_PDEATHSIG = 1
CONFIG_CHECK_INTERVAL = 2.0  # seconds between looks at the config file's modification time
STATUS_FILE = "status.json"
LOCK_FILE = "router.lock"
HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class ExitCode(int, Enum):
    OK = 0
    BAD_CONFIG = 1
    SPOOL_IN_USE = 2
    SPOOL_UNUSABLE = 3
    LISTEN_UNAVAILABLE = 4


class Role(str, Enum):
    LISTENER = "listener"
    WORKER = "worker"

    @property
    def module(self) -> str:
        return "router.listener" if self is Role.LISTENER else "workers"


@dataclass
class Child:
    """One supervised process and its restart history."""

    role: Role
    index: int
    pid: int = 0
    started_at: float = 0.0
    restarts: int = 0
    alive: bool = False
    next_delay: float = FIRST_RESTART_DELAY
    restart_at: float | None = field(default=None, repr=False)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.role.value}-{self.index}"


def _before_exec(supervisor_pid: int) -> None:
    """In the child, before exec: signals of its own, no longer the supervisor's (they are blocked
    since the fork, so none was taken for the supervisor's); SIGTERM when the supervisor dies,
    and at once if it died before that was asked for."""
    signal.set_wakeup_fd(-1)
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def listen_problem(host: str, port: int) -> str | None:
    """Why the router cannot listen on `host`:`port` (another program has it, the address is not
    ours), or None. The listeners share the port (SO_REUSEPORT) with any socket that asks to, so a
    second router would quietly take half the associations: a plain bind tells first."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a listener: TIME_WAIT is no user
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


class Supervisor:
    """Runs the router described by the config file at `path`."""

    def __init__(self, path: Path, log_json: bool = False) -> None:
        self.path = path
        self.log_json = log_json
        self.config: Config = load_config(path)
        self.spool = Spool(self.config.router.spool)
        self.children = [Child(Role.LISTENER, i) for i in range(self.config.router.listeners)] + [
            Child(Role.WORKER, i) for i in range(self.config.router.workers)
        ]
        self._stopping = False
        self._lock_handle = None
        self._config_stamp = _stamp(path)

    # ---- running ----------------------------------------------------------
    def run(self) -> ExitCode:
        try:
            self.spool.create()
        except OSError as exc:
            LOGGER.error(f"cannot use {self.spool.root} as the spool: {exc.strerror or exc}")
            return ExitCode.SPOOL_UNUSABLE
        if not self._lock_spool():
            LOGGER.error(f"another router already runs on the spool {self.spool.root}")
            return ExitCode.SPOOL_IN_USE
        listen = self.config.router.listen
        if (problem := listen_problem(listen.host, listen.port)) is not None:
            LOGGER.error(f"cannot listen on {listen}: {problem}")
            return ExitCode.LISTEN_UNAVAILABLE
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, lambda *_: None)  # the wake-up fd carries the signal number
        LOGGER.info(
            f"router {self.config.router.ae_title} on {self.config.router.listen}: "
            f"{self.config.router.listeners} listener(s), {self.config.router.workers} worker(s), spool {self.spool.root}"
        )
        for child in self.children:
            self._start(child)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(wake_read, selectors.EVENT_READ)
                while not self._stopping:
                    selector.select(self._next_timeout())
                    self._handle_signals(wake_read)
                    self._restart_due()
                    self._reload_if_changed()
        finally:
            signal.set_wakeup_fd(-1)
            wake_read.close()
            wake_write.close()
        self._stop_all()
        return ExitCode.OK

    def _handle_signals(self, wake_read: socket.socket) -> None:
        try:
            received = wake_read.recv(256)
        except BlockingIOError:
            received = b""
        for signum in set(received):
            if signum in (signal.SIGTERM, signal.SIGINT):
                LOGGER.info(f"{signal.Signals(signum).name}: stopping")
                self._stopping = True
            elif signum == signal.SIGHUP:
                self._reload()
        self._reap()

    def _next_timeout(self) -> float:
        due = [child.restart_at - time.monotonic() for child in self.children if child.restart_at is not None]
        return max(0.0, min([*due, CONFIG_CHECK_INTERVAL]))

    def _reload_if_changed(self) -> None:
        """A config file saved since it was read is reloaded as on SIGHUP."""
        stamp = _stamp(self.path)
        if stamp != self._config_stamp:
            self._config_stamp = stamp
            LOGGER.info(f"{self.path} changed")
            self._reload()

    # ---- children ---------------------------------------------------------
    def _command(self, child: Child) -> list[str]:
        command = [sys.executable, "-m", child.role.module, str(self.path), "--index", str(child.index)]
        return command + (["--log-json"] if self.log_json else [])

    def _start(self, child: Child) -> None:
        # Until its exec, the child runs the supervisor's handlers, which write to the supervisor's wake-up
        # socket: a SIGTERM for the child would stop the router. Blocked, it waits for the child's own.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            child.process = subprocess.Popen(self._command(child), preexec_fn=functools.partial(_before_exec, os.getpid()))
        except (OSError, subprocess.SubprocessError) as exc:  # e.g. no memory or process left to fork
            self._schedule_restart(child, f"could not be started ({exc})")
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child.pid, child.alive, child.restart_at = child.process.pid, True, None
        if child.started_at:  # it ran before: a restart (counted once it starts: a failed start is retried)
            child.restarts += 1
        child.started_at = time.monotonic()
        LOGGER.info(f"started {child.name} (pid {child.pid})")
        self._write_status()

    def _reap(self) -> None:
        for child in self.children:
            if not child.alive or child.process is None or child.process.poll() is None:
                continue
            child.alive = False
            code = child.process.returncode
            if self._stopping:
                continue
            uptime = time.monotonic() - child.started_at
            if uptime >= STABLE_AFTER:
                child.next_delay = FIRST_RESTART_DELAY
            self._schedule_restart(child, f"(pid {child.pid}) exited with {_exit_text(code)}")

    def _schedule_restart(self, child: Child, what_happened: str) -> None:
        LOGGER.error(f"{child.name} {what_happened}; restarting in {child.next_delay:g} s")
        child.restart_at = time.monotonic() + child.next_delay
        child.next_delay = min(child.next_delay * 2, MAX_RESTART_DELAY)
        self._write_status()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now and not self._stopping:
                self._start(child)

    def _reload(self) -> None:
        try:
            config = load_config(self.path)
        except ConfigError as error:
            LOGGER.error(f"SIGHUP: {self.path} has {len(error.problems)} problem(s); keeping the running config")
            for problem in error.problems:
                LOGGER.error(str(problem))
            return
        if (config.router.listeners, config.router.workers, config.router.spool) != (
            self.config.router.listeners, self.config.router.workers, self.config.router.spool,
        ):
            LOGGER.warning("SIGHUP: process counts and the spool change only with a restart of the router")
        self.config = config
        LOGGER.info("SIGHUP: config reloaded; passing it on")
        for child in self.children:
            if child.alive and child.process is not None:
                child.process.send_signal(signal.SIGHUP)

    def _stop_all(self) -> None:
        """Listeners first (no new instances), then workers; kill what outlives the timeout."""
        for role in (Role.LISTENER, Role.WORKER):
            group = [c for c in self.children if c.role is role and c.alive and c.process is not None]
            for child in group:
                child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            deadline = time.monotonic() + STOP_TIMEOUT
            for child in group:
                try:
                    child.process.wait(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    LOGGER.error(f"{child.name} did not stop in {STOP_TIMEOUT:g} s: killing it")
                    child.process.kill()  # type: ignore[union-attr]
                    child.process.wait()  # type: ignore[union-attr]
                child.alive = False
        self._write_status()
        LOGGER.info("router stopped")

    # ---- files ------------------------------------------------------------
    def _lock_spool(self) -> bool:
        self._lock_handle = open(self.spool.root / LOCK_FILE, "a")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _write_status(self) -> None:
        status = {
            "supervisor": {"pid": os.getpid(), "config": str(self.path)},
            "processes": [
                {"name": child.name, "role": child.role.value, "index": child.index, "pid": child.pid,
                 "alive": child.alive, "restarts": child.restarts}
                for child in self.children
            ],
        }
        temporary = self.spool.root / f".{STATUS_FILE}.tmp"
        temporary.write_text(json.dumps(status, indent=1))
        temporary.replace(self.spool.root / STATUS_FILE)


def read_status(spool: Spool) -> dict | None:
    """What the supervisor last wrote of its processes, or None if it never ran on this spool."""
    try:
        return json.loads((spool.root / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def supervisor_running(spool: Spool) -> bool:
    """True while a router holds the spool's lock."""
    try:
        with open(spool.root / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _stamp(path: Path) -> tuple[int, int] | None:
    """When and how big the file was last written; None if it cannot be read."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _exit_text(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
