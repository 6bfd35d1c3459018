"""Typed, strict configuration loaded from TOML.

A kiosk with a typo in its config must not start and half-work at a shop
counter: an unknown key, a wrong type or an impossible value stops start-up
with one line naming the file, the key and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from drivers.specs import (
    CameraSpec,
    DisplaySpec,
    HardwareSpec,
    LightsSpec,
    NfcSpec,
    SerialSpec,
    WedgeSpec,
)
from kiosk import KioskError
from kiosk.mqtt.protocol import TOPIC_WORD
from kiosk.mqtt.settings import MqttSettings as MqttSection
from kiosk.trust.signing import Verifier
from kiosk.ui.settings import UiSection

DEFAULT_PATH = "/etc/kiosk/kiosk.toml"


class ConfigError(KioskError, ValueError):
    """The config file cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class KioskSection:
    """Who this kiosk is and where it keeps its state."""

    device_id: str = ""
    site: str = "shop"
    state_dir: str = "/var/lib/kiosk"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.device_id and not TOPIC_WORD.match(self.device_id):
            raise ValueError("device_id: expected 1-64 letters, digits, '_', '-' or '.'")
        if not TOPIC_WORD.match(self.site):
            raise ValueError("site: expected 1-64 letters, digits, '_', '-' or '.'")
        object.__setattr__(self, "log_level", self.log_level.upper())  # "info" is fine too
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("log_level: expected DEBUG, INFO, WARNING or ERROR")


@dataclass(frozen=True)
class MembersSection:
    """Which codes are member codes; anything else gets the "unknown card" screen."""

    pattern: str = r"LOY-[A-Z0-9]{4,32}"
    card_keys: str = ""
    tag_ids: bool = True

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern: expected a regular expression ({exc})") from None
        _ = self.card_issuers  # checks card_keys

    @property
    def card_issuers(self) -> Verifier | None:
        """The trusted card-issuer public keys; None when signed cards are not accepted."""
        texts = [text for text in re.split(r"[\s,]+", self.card_keys) if text]
        if not texts:
            return None
        try:
            return Verifier.from_texts(texts)
        except ValueError:
            raise ValueError("card_keys: expected card-issuer public keys (43 characters "
                             "of base64url each, as `kiosk card-key` prints), comma-separated"
                             ) from None


@dataclass(frozen=True)
class CounterSection:
    """Timings of what the customer sees."""

    reply_timeout_s: float = 3.0
    result_screen_s: float = 6.0
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.cooldown_s <= 86400:
            raise ValueError("cooldown_s: expected 0 to 86400 s")
        if not 0 < self.reply_timeout_s <= 60:
            raise ValueError("reply_timeout_s: expected a time above 0 and up to 60 s")
        if not 0.5 <= self.result_screen_s <= 120:
            raise ValueError("result_screen_s: expected 0.5 to 120 s")


@dataclass(frozen=True)
class OutboxSection:
    """The durable queue of check-ins not yet acknowledged by the backend."""

    max_rows: int = 100000
    max_mb: float = 64.0
    publish_window: int = 1000
    """Check-in messages (one check-in, or a batch) handed to paho and not yet acknowledged by
    the broker: paho sends them as the broker's receive window allows, without waiting for
    the controller between two, which doubled a drain (4.0 s against 7.9 s for 20,000 one a
    message, tools/bench/outbox.py)."""
    ack_timeout_s: float = 30.0
    """A check-in the backend has not acknowledged this long after it was sent goes again."""
    backend_alarm_s: float = 600.0
    """A backend silent this long with check-ins sent makes the kiosk ``degraded``."""

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError("max_rows: expected 1 or more")
        if not 0.01 <= self.max_mb <= 100000:
            raise ValueError("max_mb: expected 0.01 MB or more")
        if not 1 <= self.publish_window <= 1000:
            raise ValueError("publish_window: expected 1 to 1000 messages in flight")
        if not 1 <= self.ack_timeout_s <= 3600:
            raise ValueError("ack_timeout_s: expected 1 to 3600 s")
        if not 1 <= self.backend_alarm_s <= 86400:
            raise ValueError("backend_alarm_s: expected 1 to 86400 s")


@dataclass(frozen=True)
class TelemetrySection:
    """Health reports for staff on ``tele/health``."""

    interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.interval_s != 0 and not 1 <= self.interval_s <= 3600:
            raise ValueError("interval_s: expected 1 to 3600 s, or 0 for no health reports")


@dataclass(frozen=True)
class HomeAssistantSection:
    """Home Assistant MQTT discovery: the kiosk appears as a device (docs/integrations.md)."""

    discovery: bool = False
    """Publish discovery configs (retained); false: remove any this kiosk published."""
    discovery_prefix: str = "homeassistant"

    def __post_init__(self) -> None:
        from kiosk.mqtt.protocol import TOPIC_WORD

        if not TOPIC_WORD.match(self.discovery_prefix):
            raise ValueError("discovery_prefix: expected one topic level (letters, digits, "
                             "'_', '-', '.')")


@dataclass(frozen=True)
class MetricsSection:
    """Health figures in Prometheus text format, for node_exporter's textfile collector."""

    textfile_dir: str = ""
    """The collector's directory (``--collector.textfile.directory``); empty: no file."""
    interval_s: float = 15.0

    def __post_init__(self) -> None:
        if not 1 <= self.interval_s <= 3600:
            raise ValueError("interval_s: expected 1 to 3600 s")


@dataclass(frozen=True)
class StaffSection:
    """Who may command and configure this kiosk over MQTT (see kiosk/provisioning/)."""

    trusted_keys: tuple[str, ...] = ()
    """Staff public keys (``kioskctl keys list``); none: the kiosk waits to be enrolled."""
    clock_synced_file: str = "/run/systemd/timesync/synchronized"
    rollback_after_s: float = 120.0

    def __post_init__(self) -> None:
        from kiosk.trust.signing import SignatureError, public_key_from_text

        for text in self.trusted_keys:
            try:
                public_key_from_text(text)
            except (SignatureError, ValueError):
                raise ValueError(f"trusted_keys: {text[:50]!r} is not a public key") from None
        if not 2 <= self.rollback_after_s <= 3600:
            raise ValueError("rollback_after_s: expected 2 to 3600 s")


@dataclass(frozen=True)
class UpdateSection:
    """Software updates over the air (docs/updates.md): who may sign a release, and how long a
    new one must stay healthy before it is kept. Local only: a remote config could otherwise
    trust its own release key."""

    release_keys: tuple[str, ...] = ()
    """Release public keys (``kioskctl release key``); none: the kiosk refuses every update."""
    health_s: float = 120.0
    """A new release must be ready, connected and healthy this long to be committed."""
    start_s: float = 180.0
    """How long a new release has to start and connect before it is switched back."""
    status_file: str = "/opt/kiosk/release.json"
    """The updater's report (read only); beside it, /opt/kiosk/releases and the links."""
    health_file: str = "/run/kiosk/release-health.json"
    """The kiosk's heartbeat the updater commits on (a tmpfs: it is written every 2 s)."""
    allow_downgrade: bool = False
    """Whether a staff order may install an older release here. Off, the root updater
    refuses every downgrade whatever the request it finds says: that request is written by
    the unprivileged kiosk, and an older signed release may carry an older updater."""

    def __post_init__(self) -> None:
        from kiosk.trust.signing import SignatureError, public_key_from_text

        for text in self.release_keys:
            try:
                public_key_from_text(text)
            except (SignatureError, ValueError):
                raise ValueError(f"release_keys: {text[:50]!r} is not a public key") from None
        if not 1 <= self.health_s <= 3600:
            raise ValueError("health_s: expected 1 to 3600 s")
        if not 1 <= self.start_s <= 3600:
            raise ValueError("start_s: expected 1 to 3600 s")


@dataclass(frozen=True)
class Config:
    """The whole configuration of one kiosk."""

    kiosk: KioskSection = field(default_factory=KioskSection)
    members: MembersSection = field(default_factory=MembersSection)
    counter: CounterSection = field(default_factory=CounterSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    telemetry: TelemetrySection = field(default_factory=TelemetrySection)
    staff: StaffSection = field(default_factory=StaffSection)
    update: UpdateSection = field(default_factory=UpdateSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    camera: CameraSpec = field(default_factory=CameraSpec)
    serial: SerialSpec = field(default_factory=SerialSpec)
    display: DisplaySpec = field(default_factory=DisplaySpec)
    lights: LightsSpec = field(default_factory=LightsSpec)
    keyboard: WedgeSpec = field(default_factory=WedgeSpec)
    nfc: NfcSpec = field(default_factory=NfcSpec)
    ui: UiSection = field(default_factory=UiSection)

    def __post_init__(self) -> None:
        _paths_apart(self)

    @property
    def hardware(self) -> HardwareSpec:
        """The device settings, as ``drivers.factory.make_hardware`` takes them."""
        return HardwareSpec(self.camera, self.serial, self.display, self.lights,
                            self.keyboard, self.nfc)


STATE_FILES = ("kiosk.db", "kiosk.db-wal", "kiosk.db-shm", "kiosk.db-journal", "kiosk.lock",
               "log-key", "config", "mqtt-session", "backend-batches", "update")
"""What the state directory itself holds (``kiosk.store``, ``kiosk.provisioning.overlay``)."""


def _paths_apart(config: Config) -> None:
    """Each part's files stay its own: the camera empties its spool folder, so that folder
    may hold nothing else; no part writes over the state directory's own files or another
    part's file. ValueError naming the key when two meet."""
    state = Path(config.kiosk.state_dir).absolute()
    files = {"display.sim_png": config.display.sim_png, "lights.sim_state": config.lights.sim_state,
             "serial.sim_link": config.serial.sim_link}
    folders = {"metrics.textfile_dir": config.metrics.textfile_dir}
    written = {key: Path(path).absolute() for key, path in {**files, **folders}.items() if path}
    for key, path in written.items():
        if path == state or (path.parent == state and path.name in STATE_FILES):
            raise ValueError(f"{key}: {path} is the state directory's own")
        for other, other_path in written.items():
            if other < key and other_path == path:
                raise ValueError(f"{key}: {path} is already {other}")
    spool = Path(config.camera.spool_dir).absolute()
    holders = {"kiosk.state_dir": state, "kiosk.state_dir's config": state / "config",
               **{key: path.parent for key, path in written.items() if key in files},
               **{key: path for key, path in written.items() if key in folders}}
    for key, path in holders.items():
        if spool == path:
            raise ValueError(f"camera.spool_dir: {spool} holds {key}; the camera empties its "
                             "spool folder")


def config_path(cli_path: str | None) -> Path:
    """``--config``, else ``$KIOSK_CONFIG``, else the system path."""
    return Path(cli_path or os.environ.get("KIOSK_CONFIG") or DEFAULT_PATH)


def load_config(path: Path) -> Config:
    """Read and check ``path``; raise :class:`ConfigError` with a one-line reason."""
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return build(Config, table, "")
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def build(cls: type, table: Any, where: str) -> Any:
    """Make dataclass ``cls`` from a TOML table, checking keys and types on the way."""
    if not isinstance(table, dict):
        raise ValueError(f"{where or 'top level'}: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ValueError(f"{_key(where, key)}: unknown key (known keys: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name in known:
        if name in table:
            values[name] = _typed(hints[name], table[name], _key(where, name))
        elif known[name].default is MISSING and known[name].default_factory is MISSING:
            raise ValueError(f"{_key(where, name)}: missing")
    try:
        return cls(**values)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}" if where else str(exc)) from None


def _typed(kind: Any, value: Any, key: str) -> Any:
    if is_dataclass(kind):
        return build(kind, value, key)  # type: ignore[arg-type]
    if typing.get_origin(kind) is tuple:  # tuple[X, ...]: a TOML array of X
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected an array, got {value!r}")
        item = typing.get_args(kind)[0]
        return tuple(_typed(item, element, f"{key}[{i}]") for i, element in enumerate(value))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{key}: expected {_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"{key}: expected {_name(kind)}, got {value!r}")
    return value


def _name(kind: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
