"""A TCP proxy on loopback that breaks the network on command, for fault tests.

Point a kiosk at ``proxy.port`` instead of the broker's, then:

- :meth:`FaultProxy.blackhole` swallows every byte both ways and keeps every
  connection open (a silent link: no reset, no FIN — a dead Wi-Fi or a NAT that
  forgot the flow); :meth:`heal` passes bytes again;
- :meth:`drop` swallows one direction only (``"down"``: broker to kiosk, so
  PUBACKs are lost while PUBLISHes arrive; ``"up"``: the other way);
- :meth:`reset` aborts every open connection with a TCP reset;
- :meth:`refuse` closes the listening socket (connection refused) until :meth:`heal`.

Only loopback addresses are used; one thread serves every connection.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading

from kiosk.testing.broker import free_port


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target_port`` until told to break."""

    host = "127.0.0.1"

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._swallow = {"up": False, "down": False}
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, tuple[socket.socket, str]] = {}
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        """Listen and forward."""
        self._listen()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close everything."""
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            self._close_listener()
            for sock in list(self._peers):
                self._close_pair(sock)
        self._selector.close()

    # --- faults ---------------------------------------------------------------

    def blackhole(self) -> None:
        """Swallow every byte, both ways, without closing anything."""
        self._swallow = {"up": True, "down": True}

    def drop(self, direction: str) -> None:
        """Swallow one direction: ``"down"`` (broker -> client) or ``"up"``."""
        self._swallow = {"up": direction == "up", "down": direction == "down"}

    def reset(self) -> None:
        """Abort every open connection with a TCP reset."""
        with self._lock:
            for sock in list(self._peers):
                with contextlib.suppress(OSError):  # SO_LINGER 0: close sends RST
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._close_pair(sock)

    def refuse(self) -> None:
        """Refuse new connections (the port is closed) and reset the open ones."""
        with self._lock:
            self._close_listener()
        self.reset()

    def heal(self) -> None:
        """Pass bytes both ways again, and accept connections again."""
        self._swallow = {"up": False, "down": False}
        with self._lock:
            if self._listener is None:
                self._listen()

    # --- the forwarding thread ------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                with self._lock:
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._peers:
                        self._forward(sock)

    def _accept(self) -> None:
        if self._listener is None:
            return
        client, _ = self._listener.accept()
        try:
            upstream = socket.create_connection((self.host, self.target_port), timeout=2)
        except OSError:
            client.close()  # the broker is down: so is the proxy's far side
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[client] = (upstream, "up")
        self._peers[upstream] = (client, "down")

    def _forward(self, sock: socket.socket) -> None:
        peer, direction = self._peers[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close_pair(sock)
            return
        if self._swallow[direction]:
            return
        try:
            peer.sendall(data)
        except OSError:
            self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        peer, _ = self._peers.pop(sock, (None, ""))
        for end in (sock, peer):
            if end is None:
                continue
            self._peers.pop(end, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(end)
            end.close()
