"""The association server: a listening socket and one thread (or process) per association.

`AssociationServer` accepts connections (TCP_NODELAY, optional TLS), gives
each its own `AcceptorAssociation` thread, keeps the list of active ones
(a connection leaves it the moment it closes), and shuts down cleanly: the
listener closes, every association is aborted and its thread joined. The
accept loop waits in `select` on the listener and a wake-up pipe: no polling.
With `forking`, each connection is served in a child process instead
(router.net.child_processes), and the loop also waits on the children's pidfds.
"""

from __future__ import annotations

import functools
import logging
import selectors
import signal
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Callable, Sequence

from router.net import evt
from router.net.acceptor import AcceptorAssociation
from router.net.child_processes import Children, forking_supported
from router.net.driver import tune_socket
from router.net.presentation import PresentationContext

if TYPE_CHECKING:
    from router.net.ae import AE

LOGGER = logging.getLogger("router.net")
LISTEN_BACKLOG = 128
JOIN_TIMEOUT = 5.0
_ADMISSION_LOCK = threading.Lock()  # every server's admissions, one at a time (see `at_limit`)


class AssociationServer:
    """Listens on `address` and serves each association on its own thread, or with `forking`
    in its own child process."""

    def __init__(
        self,
        ae: "AE",
        address: tuple[str, int],
        ae_title: str,
        contexts: Sequence[PresentationContext],
        handlers: Sequence | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        forking: bool = False,
    ) -> None:
        if forking and not forking_supported():
            raise ValueError("Serving each association in a process of its own needs os.fork and os.pidfd_open (Linux)")
        self.ae = ae
        self.ae_title = ae_title
        self.contexts = list(contexts)
        self.handlers = evt.HandlerRegistry(handlers)
        self.ssl_context = ssl_context
        self._associations: list[AcceptorAssociation] = []
        self._handshaking: set[ssl.SSLSocket] = set()  # connections in their TLS handshake
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._finished = False
        self._accept_thread: threading.Thread | None = None
        self._children = Children() if forking else None
        self._selector: selectors.BaseSelector | None = None
        self._wake_read, self._wake_write = socket.socketpair()
        self.socket = socket.create_server(address, backlog=LISTEN_BACKLOG, reuse_port=reuse_port)

    @property
    def server_address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    def own_sockets(self) -> tuple[socket.socket, ...]:
        """The sockets of the server itself (not of its associations)."""
        return self.socket, self._wake_read, self._wake_write

    @property
    def child_pids(self) -> list[int]:
        """With `forking`: the processes serving an association right now (else empty)."""
        return self._children.pids if self._children is not None else []

    @property
    def active_associations(self) -> list[AcceptorAssociation]:
        """The associations whose connection is still open."""
        with self._lock:
            return list(self._associations)

    def at_limit(self, candidate: AcceptorAssociation) -> bool:
        """True if serving `candidate` would exceed the AE's maximum number of associations.

        Only admitted associations whose connection is open hold a slot: a connection
        that has not sent its A-ASSOCIATE-RQ yet, or whose peer has already left, does
        not. Checking and admitting are one step, so two requests never share one slot.
        """
        with _ADMISSION_LOCK:
            others = [
                a for a in self.ae.active_associations
                if a is not candidate and a.is_acceptor and a.admitted and a.is_alive
            ]
            siblings = len(self._children) if self._children is not None else 0  # forked before this child
            if len(others) + siblings >= self.ae.maximum_associations:
                return True
            candidate.admitted = True
            return False

    # ---- handlers ---------------------------------------------------------
    def bind(self, event: evt.EventType, handler: Callable, args: list | None = None) -> None:
        """Bind for future associations and for every active one."""
        self.handlers.bind(event, handler, args)
        for assoc in self.active_associations:
            assoc.bind(event, handler, args)

    def unbind(self, event: evt.EventType, handler: Callable) -> None:
        """Unbind from future associations and from every active one."""
        self.handlers.unbind(event, handler)
        for assoc in self.active_associations:
            assoc.unbind(event, handler)

    def get_handlers(self, event: evt.EventType) -> list:
        return self.handlers.handlers(event)

    # ---- running ----------------------------------------------------------
    def start(self) -> None:
        """Run `serve_forever` on a thread of its own."""
        self._accept_thread = threading.Thread(target=self.serve_forever, name="association-server", daemon=True)
        self._accept_thread.start()

    def serve_forever(self) -> None:
        """Accept connections until `shutdown`."""
        with selectors.DefaultSelector() as selector:
            self._selector = selector
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.data is not None:  # a child's pidfd: that child has exited
                        selector.unregister(key.fileobj)
                        self._children.reap(key.data)
                    elif key.fileobj is self.socket and not self._stopping.is_set():
                        self._accept()

    def _accept(self) -> None:
        try:
            sock, address = self.socket.accept()
        except OSError:
            return
        try:
            tune_socket(sock)
        except OSError:
            sock.close()
            return
        if self._children is not None:
            self._fork(sock, address)
            return
        # The TLS handshake runs on the connection's own thread: a client that
        # never completes it must not hold up the accept loop.
        thread = threading.Thread(target=self._serve, args=(sock, address), name=f"assoc-{address[0]}:{address[1]}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _fork(self, sock: socket.socket, address: tuple[str, int]) -> None:
        """Serve `sock` in a child process; the parent keeps only the child's pidfd."""
        assert self._children is not None and self._selector is not None
        inherited = (*self.own_sockets(), self._selector, *self.ae.sockets_besides(self))
        try:
            pid, pidfd = self._children.spawn(
                functools.partial(self._serve_in_child, sock, address), inherited,
                locks=(_ADMISSION_LOCK, self.ae.lock, self._lock),  # in the order `at_limit` takes them
            )
        except OSError as exc:
            LOGGER.error(f"Cannot start a process for the association from {address[0]}:{address[1]}: {exc}")
        else:
            self._selector.register(pidfd, selectors.EVENT_READ, pid)
        finally:
            sock.close()

    def _serve_in_child(self, sock: socket.socket, address: tuple[str, int]) -> None:
        signal.signal(signal.SIGTERM, self._stop_in_child)
        self._serve(sock, address)

    def _stop_in_child(self, signum: int, frame: object) -> None:
        """SIGTERM in a child: abort its association, as `shutdown` does for a thread."""
        self._stopping.set()
        self._interrupt_associations()

    def _interrupt_associations(self) -> None:
        """Wake every association's blocking read so that it aborts.

        Takes no lock, since a child's SIGTERM handler calls it between any two bytecodes of the
        main thread, maybe while that holds `_lock`: copying the list is atomic, and `interrupt`
        locks nothing either.
        """
        for assoc in list(self._associations):
            if assoc.link is not None:
                assoc.link.interrupt()

    def _handshake(self, sock: socket.socket, address: tuple[str, int]) -> ssl.SSLSocket | None:
        """Wrap `sock` in TLS within the ACSE timeout; None (socket closed) if that fails."""
        assert self.ssl_context is not None
        try:
            sock.settimeout(self.ae.acse_timeout)
            tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ssl.SSLError) as exc:
            LOGGER.error(f"TLS setup with {address[0]}:{address[1]} failed: {exc}")
            sock.close()
            return None
        with self._lock:
            self._handshaking.add(tls)
        try:
            if self._stopping.is_set():
                raise ConnectionAbortedError("the server is shutting down")
            tls.do_handshake()
            return tls
        except (OSError, ssl.SSLError) as exc:
            if not self._stopping.is_set():
                LOGGER.error(f"TLS handshake with {address[0]}:{address[1]} failed: {exc}")
            tls.close()
            return None
        finally:
            with self._lock:
                self._handshaking.discard(tls)

    def _serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        if self.ssl_context is not None:
            sock = self._handshake(sock, address)
            if sock is None:
                return
        assoc = AcceptorAssociation(self, sock, address)
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                return
            self._associations.append(assoc)
        try:
            assoc.serve()
        finally:
            self.forget(assoc)

    def forget(self, assoc: AcceptorAssociation) -> None:
        """Drop a closed association from the active list (frees its slot at once)."""
        with self._lock:
            if assoc in self._associations:
                self._associations.remove(assoc)

    def shutdown(self) -> None:
        """Stop accepting, abort every active association, and wait for their threads."""
        self._stop_accepting()
        self._finish()

    def drain(self, timeout: float) -> bool:
        """Stop accepting, give open associations up to `timeout` s to end, then shut down.

        True if every association ended on its own. The listening socket closes
        at once, so a sibling server sharing the port (`reuse_port`) takes the
        new connections meanwhile.
        """
        self._stop_accepting()
        finished = self._join_associations(timeout)
        self._finish()
        return finished

    def _stop_accepting(self) -> None:
        """Close the listening socket (once)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake_write.send(b"\0")
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(JOIN_TIMEOUT)
        self.socket.close()

    def _finish(self) -> None:
        """Abort what is still open and wait for its threads (once)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            handshaking = list(self._handshaking)
        self._interrupt_associations()
        if self._children is not None:
            self._children.terminate()
        for tls in handshaking:
            try:  # the plain socket's shutdown: it wakes the handshake's blocking read at once
                socket.socket.shutdown(tls, socket.SHUT_RDWR)
            except OSError:
                pass
        self._join_associations(JOIN_TIMEOUT)
        if self._children is not None:
            self._children.kill()  # what SIGTERM did not end in time
        self._wake_read.close()
        self._wake_write.close()
        self.ae.server_stopped(self)

    def _join_associations(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the association threads (or processes); True if all ended."""
        if self._children is not None:
            return self._children.wait(timeout)
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [thread for thread in self._threads if thread is not threading.current_thread()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)


class ThreadedAssociationServer(AssociationServer):
    """The server `start_server(block=False)` returns: already accepting on its own thread."""
