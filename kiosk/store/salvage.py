"""Getting the waiting check-ins out of a corrupt database, and remembering them until delivered.

SQLite reads a table from its root page down; one damaged page high in that
tree (the root, or the file's header) hides every row below it although the
rows themselves sit intact on their own pages. So after reading what SQLite
can, the file is read page by page, as SQLite lays it out
(https://www.sqlite.org/fileformat2.html): every table leaf page, with its
newest committed version from the ``-wal`` file, is parsed cell by cell, and
every record shaped like an outbox row (``id`` stored as NULL, ``event_id``
text, ``payload`` blob, ``stored_at`` a number) is taken. A damaged page loses
only its own rows. Pages on the freelist (deleted, delivered rows) are skipped
while the header still names them.

The rows salvaged go into the fresh outbox first, and the ``salvaged`` table
records the file they came from and the last row id they took: the kiosk says
so (``degraded``) until every one of them has been delivered, across restarts.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Row = tuple[str, bytes, float]
"""``(event_id, payload, stored_at)`` of one outbox row."""

_HEADER = b"SQLite format 3\x00"
_TABLE_LEAF = 0x0D
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def read_outbox(path: Path) -> list[Row]:
    """Every outbox row still readable in the database at ``path`` (and its ``-wal``), in
    the order they were stored."""
    found: dict[str, tuple[int, bytes, float]] = {}  # event_id -> (old row id, payload, at)
    if not _through_sqlite(path, found):
        _through_pages(path, found)
    ordered = sorted(found.items(), key=lambda item: item[1][0])
    return [(event_id, payload, at) for event_id, (_row, payload, at) in ordered]


def _through_sqlite(path: Path, found: dict[str, tuple[int, bytes, float]]) -> bool:
    """Read the outbox as SQLite sees it; True when that read every row without an error."""
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        for row_id, event_id, payload, stored_at in source.execute(
                "SELECT id, event_id, payload, stored_at FROM outbox ORDER BY id"):
            found.setdefault(event_id, (row_id, payload, stored_at))
        return True
    except sqlite3.Error:
        return False
    finally:
        source.close()


def _through_pages(path: Path, found: dict[str, tuple[int, bytes, float]]) -> None:
    data = path.read_bytes()
    wal_path = Path(f"{path}-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    size = _page_size(data, wal)
    pages = {number + 1: data[offset:offset + size]
             for number, offset in enumerate(range(0, len(data) - size + 1, size))}
    pages.update(_wal_pages(wal, size))
    header = pages.get(1, b"")[:100]
    reserved = header[20] if header.startswith(_HEADER) else 0
    usable = size - reserved
    skip = _freelist(pages, header)
    for number, page in pages.items():
        if number in skip:
            continue
        for row_id, values in _leaf_records(page, number, usable, pages):
            if (len(values) == 4 and values[0] is None and isinstance(values[1], str)
                    and isinstance(values[2], bytes) and isinstance(values[3], int | float)
                    and values[1]):
                found.setdefault(values[1], (row_id, values[2], float(values[3])))


def _page_size(data: bytes, wal: bytes) -> int:
    """The page size the header says; else the WAL's; else the size most pages make sense in."""
    if data.startswith(_HEADER):
        size = struct.unpack(">H", data[16:18])[0]
        size = 65536 if size == 1 else size
        if size in _PAGE_SIZES:
            return size
    if len(wal) >= 32 and struct.unpack(">I", wal[:4])[0] in _WAL_MAGIC:
        size = struct.unpack(">I", wal[8:12])[0]
        if size in _PAGE_SIZES:
            return size

    def leaves(size: int) -> int:
        return sum(1 for offset in range(size, len(data) - size + 1, size)
                   if any(True for _ in _leaf_records(data[offset:offset + size], 2, size, {})))
    return max(_PAGE_SIZES, key=leaves)  # a tie keeps the first: SQLite's default, 4096


def _wal_pages(wal: bytes, size: int) -> dict[int, bytes]:
    """The newest committed version of each page in the WAL (frames after the last commit,
    or of an older WAL generation — other salts — are not part of the database)."""
    if len(wal) < 32 or struct.unpack(">I", wal[:4])[0] not in _WAL_MAGIC:
        return {}
    salts = wal[16:24]
    committed: dict[int, bytes] = {}
    pending: dict[int, bytes] = {}
    offset = 32
    while offset + 24 + size <= len(wal):
        number, commit = struct.unpack(">II", wal[offset:offset + 8])
        if wal[offset + 8:offset + 16] != salts:
            break
        pending[number] = wal[offset + 24:offset + 24 + size]
        if commit:
            committed.update(pending)
            pending = {}
        offset += 24 + size
    return committed


def _freelist(pages: dict[int, bytes], header: bytes) -> set[int]:
    """Pages the header lists as free (their old rows were deleted); empty without a header."""
    if not header.startswith(_HEADER):
        return set()
    free: set[int] = set()
    trunk = struct.unpack(">I", header[32:36])[0]
    while trunk and trunk not in free and trunk in pages:
        free.add(trunk)
        page = pages[trunk]
        following, count = struct.unpack(">II", page[:8])
        count = min(count, (len(page) - 8) // 4)
        free.update(struct.unpack(f">{count}I", page[8:8 + 4 * count]))
        trunk = following
    return free


def _leaf_records(page: bytes, number: int, usable: int, pages: dict[int, bytes],
                  ) -> list[tuple[int, list[object]]]:
    """``(row id, values)`` of every well-formed cell on a table leaf page; nothing for any
    other page. A cell that does not parse is skipped, not the page."""
    start = 100 if number == 1 else 0
    if len(page) < start + 8 or page[start] != _TABLE_LEAF:
        return []
    count = struct.unpack(">H", page[start + 3:start + 5])[0]
    pointers = start + 8
    if pointers + 2 * count > usable:
        return []
    records = []
    for index in range(count):
        cell = struct.unpack(">H", page[pointers + 2 * index:pointers + 2 * index + 2])[0]
        if not pointers + 2 * count <= cell < usable:
            continue
        try:
            length, offset = _varint(page, cell)
            row_id, offset = _varint(page, offset)
            payload = _payload(page, offset, length, usable, pages)
            records.append((row_id, _record(payload)))
        except (ValueError, IndexError, struct.error, UnicodeDecodeError):
            continue
    return records


def _payload(page: bytes, offset: int, length: int, usable: int,
             pages: dict[int, bytes]) -> bytes:
    """A cell's payload: the part on the page, then its overflow pages."""
    most = usable - 35
    least = (usable - 12) * 32 // 255 - 23
    local = length
    if length > most:
        local = least + (length - least) % (usable - 4)
        local = local if local <= most else least
    payload = bytearray(page[offset:offset + local])
    if len(payload) != local or offset + local > usable:
        raise ValueError("cell runs off its page")
    if local < length:
        following = struct.unpack(">I", page[offset + local:offset + local + 4])[0]
        seen: set[int] = set()
        while len(payload) < length:
            if following in seen or following not in pages:
                raise ValueError("broken overflow chain")
            seen.add(following)
            overflow = pages[following]
            payload += overflow[4:usable][:length - len(payload)]
            following = struct.unpack(">I", overflow[:4])[0]
    return bytes(payload)


def _record(payload: bytes) -> list[object]:
    """The values of one record (https://www.sqlite.org/fileformat2.html#record_format)."""
    header_size, offset = _varint(payload, 0)
    if not 0 < header_size <= len(payload):
        raise ValueError("bad record header")
    kinds = []
    while offset < header_size:
        kind, offset = _varint(payload, offset)
        kinds.append(kind)
    values: list[object] = []
    position = header_size
    for kind in kinds:
        if kind in (0, 8, 9):
            values.append(None if kind == 0 else kind - 8)
            continue
        if kind in (10, 11):
            raise ValueError("reserved serial type")
        size = _INT_SIZES.get(kind, 8 if kind == 7 else (kind - 12) // 2)
        raw = payload[position:position + size]
        if len(raw) != size:
            raise ValueError("record runs off its payload")
        position += size
        if kind == 7:
            values.append(struct.unpack(">d", raw)[0])
        elif kind < 7:
            values.append(int.from_bytes(raw, "big", signed=True))
        elif kind % 2 == 0:
            values.append(raw)
        else:
            values.append(raw.decode("utf-8"))
    return values


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    """SQLite's big-endian variable-length integer at ``offset``, and the offset after it."""
    value = 0
    for index in range(8):
        byte = data[offset + index]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, offset + index + 1
    return (value << 8) | data[offset + 8], offset + 9


class Salvaged:
    """Check-ins salvaged from corrupt databases and not delivered yet; ``report(text)`` says
    which files they came from (``None`` once every one is delivered). Controller thread."""

    def __init__(self, conn: sqlite3.Connection, report: Callable[[str | None], None]) -> None:
        self._conn = conn
        self._report = report
        self._files: list[tuple[str, int, int]] = conn.execute(
            "SELECT file, last_row, rows FROM salvaged ORDER BY last_row").fetchall()
        self._say()

    def check(self) -> None:
        """Forget the files whose rows have all left the outbox (delivered)."""
        if not self._files:
            return
        try:
            lowest = self._conn.execute("SELECT MIN(id) FROM outbox").fetchone()[0]
            done = [file for file, last, _ in self._files if lowest is None or lowest > last]
            if not done:
                return
            self._conn.executemany("DELETE FROM salvaged WHERE file = ?", [(f,) for f in done])
        except sqlite3.Error as exc:  # a full disk: still true, and tried again next time
            log.warning("salvaged check-ins delivered, but not noted yet: %s", exc)
            return
        log.info("every check-in salvaged from %s is delivered", ", ".join(done))
        self._files = [entry for entry in self._files if entry[0] not in done]
        self._say()

    def _say(self) -> None:
        self._report("; ".join(f"database was corrupt, moved to {file}: {rows} salvaged "
                               f"check-ins not delivered yet" for file, _, rows in self._files)
                     or None)
