"""A private mosquitto on a free loopback port, which a test can stop, restart, kill or freeze.

Used by the test suite, by ``kiosk demo`` and by integrators' CI: nothing
depends on a system-wide broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from kiosk import KioskError
from kiosk.mqtt.client import connect_now, make_client
from kiosk.mqtt.settings import MqttSettings

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


class BrokerError(KioskError):
    """mosquitto is missing or would not start."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin), or None."""
    return shutil.which("mosquitto", path=SEARCH_PATH)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """One mosquitto process; ``port`` and persisted sessions stay the same across restarts."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None, drop_in: str | None = None,
                 persistence: bool = True, max_queued: int = 100000) -> None:
        """``drop_in`` replaces the open loopback listener with a ``conf.d`` file of your own
        (e.g. the shipped TLS config, moved by :func:`secure_drop_in`); it must listen on
        ``port``. ``persistence=False`` makes a restart forget every session and
        subscription (a careless production broker): the kiosk must still lose nothing.
        ``max_queued`` is how many messages the broker queues for a client that is away
        before it drops the rest (as mosquitto's ``max_queued_messages``)."""
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        self._binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.log_path = workdir / "mosquitto.log"
        self._drop_in = drop_in
        self.persistence = persistence
        self.max_queued = max_queued
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            # Persistent like a production broker: sessions (the backend's subscription)
            # survive a restart, saved after every change so even a SIGKILL keeps them.
            (f"persistence true\npersistence_location {self.workdir}/\n"
             "autosave_on_changes true\nautosave_interval 1\n" if self.persistence
             else "persistence false\n")
            # Run as root, mosquitto would switch to its own user and lose our files.
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # Last, as Debian's mosquitto.conf includes conf.d at its end.
            + (self._drop_in or f"listener {self.port} {self.host}\nallow_anonymous true\n"
               f"max_queued_messages {self.max_queued}\n")
        )
        self._process = subprocess.Popen(
            [self._binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._process.returncode}; "
                                  f"see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (self.host, self.port), timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    @property
    def running(self) -> bool:
        """True while the process exists (it may be frozen)."""
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the broker cleanly (clients see the connection close)."""
        if self._process is not None:
            self.resume()
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def kill(self) -> None:
        """SIGKILL: the broker vanishes mid-conversation, as on a power cut."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        """Freeze the broker: connections stay open but nothing is answered (no PUBACK)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a frozen broker."""
        self._signal(signal.SIGCONT)

    @contextlib.contextmanager
    def listen(self, topic: str) -> Iterator[list[bytes]]:
        """Collect every payload published on ``topic`` (retained ones too) inside the block.

        The block starts once the broker has confirmed the subscription, so nothing
        published inside it is missed.
        """
        payloads: list[bytes] = []
        subscribed = threading.Event()
        client = make_client(
            MqttSettings(host=self.host, port=self.port), f"listen-{uuid.uuid4().hex[:10]}",
            on_message=lambda _client, _userdata, message: payloads.append(
                bytes(message.payload)),
            on_subscribe=lambda *_args: subscribed.set())
        connect_now(client)
        client.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            client.loop_stop()
            raise BrokerError(f"no SUBACK for {topic} within 10 s")
        try:
            yield payloads
        finally:
            client.loop_stop()
            client.disconnect()

    def log_text(self) -> str:
        """What mosquitto logged so far (errors, warnings, notices)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signum)


DROP_IN_FILES = ("cafile", "certfile", "keyfile", "acl_file")


def secure_drop_in(shipped: str, files: Path, port: int, host: str = "127.0.0.1") -> str:
    """A shipped drop-in (``config/mosquitto/loyalty.conf``) moved for a test, and only moved.

    Its ``listener`` goes to ``host:port`` and its certificate and ACL files are
    taken from ``files`` under the same names; every other line stays as shipped.
    """
    lines = []
    for line in shipped.splitlines():
        key, _, value = line.partition(" ")
        if key == "listener":
            line = f"listener {port} {host}"
        elif key in DROP_IN_FILES:
            line = f"{key} {files / Path(value.strip()).name}"
        lines.append(line)
    return "\n".join(lines) + "\n"
