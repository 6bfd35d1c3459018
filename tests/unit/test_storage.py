"""The outbox and member cache on a real SQLite file: order, bounds, full disks, corruption."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from kiosk.counter.members import MemberStatus
from kiosk.store import db as kiosk_db
from kiosk.store.cache import MemberCache
from kiosk.store.db import StorageError, open_db
from kiosk.store.outbox import ROWS_PER_STATEMENT, Outbox, OutboxError, local_day


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "state" / "kiosk.db"


def test_rows_come_out_in_the_order_they_went_in_and_survive_a_reopen(db_path):
    conn, moved = open_db(db_path)
    assert moved is None
    outbox = Outbox(conn, max_rows=100)
    ids = [outbox.add(f"e{n}", f'{{"n":{n}}}'.encode()) for n in range(5)]
    outbox.remove([ids[1], ids[3]])
    assert [row for row, _, _ in outbox.with_events(["e4", "e0", "e1", "e9"])] == [ids[0], ids[4]]
    conn.close()

    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=100)
    assert outbox.depth == 3
    assert [payload for _, _, payload in outbox.after(0, 10)] == [
        b'{"n":0}', b'{"n":2}', b'{"n":4}']
    assert [(row, event) for row, event, _ in outbox.after(ids[2], 10)] == [(ids[4], "e4")]
    assert outbox.oldest_age() >= 0.0


def test_check_ins_today_are_counted_with_each_check_in_and_survive_a_restart(db_path):
    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=100)
    today, yesterday = time.time(), time.time() - 86400
    outbox.add_many([("e1", b"{}"), ("e2", b"{}")], [("LOY-A1", today), ("LOY-B2", today)])
    outbox.add_many([("e3", b"{}")], [("LOY-C3", yesterday)])
    outbox.remove([row for row, _, _ in outbox.after(0, 10)])  # delivered: still counted
    conn.close()
    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=100)
    assert outbox.checkins_on(local_day(today)) == 2
    assert outbox.checkins_on(local_day(yesterday)) == 1


def test_a_rush_larger_than_one_statement_gets_the_ids_it_was_stored_under(db_path):
    """add_many stores a rush with multi-row INSERTs and works the ids out from the last
    one; after deletes at the end (AUTOINCREMENT does not reuse them) the ids it returns
    must still be exactly the stored rows', in order, and the cooldown rows all land."""
    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=10_000)
    first = outbox.add_many([(f"a{n}", b"x") for n in range(10)], [])
    outbox.remove(first[5:])  # the highest ids are gone; new ones must not reuse them
    rush = [(f"b{n}", f"{n}".encode()) for n in range(ROWS_PER_STATEMENT * 2 + 7)]
    seen = [(f"M{n}", float(n)) for n in range(ROWS_PER_STATEMENT + 3)]
    ids = outbox.add_many(rush, seen)
    stored = conn.execute("SELECT id, event_id FROM outbox WHERE event_id LIKE 'b%' "
                          "ORDER BY id").fetchall()
    assert stored == [(row_id, event_id) for row_id, (event_id, _) in zip(ids, rush, strict=True)]
    assert min(ids) > max(first)
    assert outbox.depth == 5 + len(rush)
    assert conn.execute("SELECT COUNT(*) FROM recent_scans").fetchone()[0] == len(seen)


def test_the_database_is_durable_wal_with_full_sync(db_path):
    conn, _ = open_db(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_full_outbox_refuses_new_check_ins_and_keeps_the_old_ones(db_path):
    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=2)
    outbox.add("e1", b"{}")
    outbox.add("e2", b"{}")
    with pytest.raises(OutboxError, match="outbox full"):
        outbox.add("e3", b"{}")
    assert outbox.depth == 2
    assert len(outbox.after(0, 10)) == 2


def test_a_full_disk_is_a_clear_error_and_nothing_stored_is_damaged(db_path):
    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=100_000)
    outbox.add("e0", b"{}")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the SD card is now full
    with pytest.raises(OutboxError, match="storage error: database or disk is full"):
        for n in range(1, 1000):
            outbox.add(f"e{n}", b"x" * 2000)
    stored = outbox.depth
    conn.close()
    conn, _ = open_db(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert Outbox(conn, max_rows=100).depth == stored >= 1


def test_a_corrupt_database_is_moved_aside_and_a_fresh_one_started(db_path):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database" * 100)
    conn, moved = open_db(db_path)
    assert moved is not None and moved.startswith(f"{db_path}.corrupt-")
    with open(moved, "rb") as kept:
        assert kept.read().startswith(b"this is not a database")
    assert Outbox(conn, max_rows=10).depth == 0


def test_the_member_cache_survives_restarts_and_stays_bounded(db_path):
    conn, _ = open_db(db_path)
    cache = MemberCache(conn, max_members=3)
    cache.put("LOY-M0", MemberStatus("M0", 0, "Bronze", 50, 0.0))
    cache.prune()  # fewer than the bound: nothing goes
    for n in range(5):
        cache.put(f"LOY-M{n}", MemberStatus(f"M{n}", n * 10, "Bronze", 50, 0.0))
    cache.put("LOY-M1", MemberStatus("M1", 11, "Bronze", 50, 0.0))  # a regular, back again
    cache.prune()
    conn.close()
    conn, _ = open_db(db_path)
    known = MemberCache(conn, max_members=3).load()
    assert sorted(known) == ["LOY-M1", "LOY-M3", "LOY-M4"]
    assert known["LOY-M4"].balance == 40 and known["LOY-M1"].balance == 11


def test_cache_rows_from_another_version_are_skipped_not_fatal(db_path):
    conn, _ = open_db(db_path)
    conn.execute("INSERT INTO members VALUES ('LOY-OLD1', '{\"points\": 3}', 0)")
    assert MemberCache(conn).load() == {}


def test_the_same_event_is_never_stored_twice(db_path):
    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=10)
    outbox.add("e1", b"{}")
    with pytest.raises(OutboxError, match="UNIQUE"):
        outbox.add("e1", b"{}")
    assert outbox.depth == 1


# --- only real corruption moves a database aside ------------------------------


def _outbox_with(path: Path, count: int) -> None:
    conn, _ = open_db(path)
    outbox = Outbox(conn, max_rows=1000)
    for n in range(count):
        outbox.add(f"event-{n}", json.dumps({"v": 1, "n": n}).encode())
    conn.close()


def _lock(path: Path) -> sqlite3.Connection:
    """Hold ``path`` the way a sqlite3 shell in exclusive locking mode does: nobody else gets in."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_locked_database_is_never_moved_aside(tmp_path, monkeypatch):
    path = tmp_path / "kiosk.db"
    _outbox_with(path, 3)
    monkeypatch.setattr(kiosk_db, "LOCK_WAIT_S", 1.0, raising=False)
    holder = _lock(path)  # an operator's sqlite3 session, or a backup
    try:
        with pytest.raises(StorageError, match="locked"):
            open_db(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("kiosk.db.corrupt-*"))
    conn, moved = open_db(path)
    assert moved is None and Outbox(conn, max_rows=10).depth == 3


def test_a_lock_released_while_starting_is_waited_for(tmp_path, monkeypatch):
    path = tmp_path / "kiosk.db"
    _outbox_with(path, 2)
    monkeypatch.setattr(kiosk_db, "LOCK_WAIT_S", 20.0, raising=False)
    holder = _lock(path)
    release = threading.Timer(6.0, lambda: (holder.execute("ROLLBACK"), holder.close()))
    release.start()  # longer than SQLite's own 5 s busy timeout
    try:
        conn, moved = open_db(path)
    finally:
        release.join()
    assert moved is None and Outbox(conn, max_rows=10).depth == 2


def test_a_database_that_cannot_be_opened_is_reported_not_discarded(tmp_path):
    path = tmp_path / "kiosk.db"
    path.mkdir()  # cannot be opened as a file, like a root-owned kiosk.db under the service user
    (path / "keep").write_text("operator's data")
    with pytest.raises(StorageError, match="cannot open"):
        open_db(path)
    assert (path / "keep").read_text() == "operator's data"
    assert not list(tmp_path.glob("kiosk.db.corrupt-*"))


def test_a_corrupt_database_is_moved_aside_and_its_waiting_checkins_salvaged(tmp_path):
    path = tmp_path / "kiosk.db"
    _outbox_with(path, 20)
    conn, _ = open_db(path)
    conn.executemany("INSERT INTO members VALUES (?, ?, 0)",
                     [(f"LOY-M{n:05d}", "x" * 200) for n in range(3000)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as file:  # scribble over the member pages, far from the outbox
        file.seek(size * 2 // 3)
        file.write(os.urandom(16384))
    conn, moved = open_db(path)
    assert moved is not None and Path(moved).exists()
    rows = Outbox(conn, max_rows=100).after(0, 100)
    assert [json.loads(payload)["n"] for _, _, payload in rows] == list(range(20))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reading_the_recent_check_ins_at_start_writes_nothing(db_path):
    conn, _ = open_db(db_path)
    outbox = Outbox(conn, max_rows=10)
    outbox.add_many([("e1", b"{}")], [("LOY-OLD0001", 100.0), ("LOY-NEW0001", 200.0)])
    conn.execute("PRAGMA query_only = 1")  # as a full disk or another program's lock would
    assert outbox.recent_scans(150.0) == {"LOY-NEW0001": 200.0}


# --- salvage reads the pages, not only the tree ---------------------------------------------


def _waiting_checkins(path: Path, count: int) -> list[str]:
    """``count`` check-ins of realistic size (about 16 to a 4 KiB page), checkpointed into the
    file as a kiosk leaves them; their event ids in order."""
    conn, _ = open_db(path)
    outbox = Outbox(conn, max_rows=1000)
    ids = [f"0190a0b1-c2d3-7e4f-8a9b-{n:012d}" for n in range(count)]
    for event_id in ids:
        outbox.add(event_id, json.dumps({"v": 1, "event_id": event_id, "pad": "x" * 170}).encode())
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return ids


def _damage_page(path: Path, number: int) -> None:
    with open(path, "r+b") as file:
        file.seek((number - 1) * 4096)
        file.write(os.urandom(4096))


def _page_of(path: Path, event_id: str) -> int:
    """The page holding the row's payload (the id alone is also on the unique index's pages)."""
    return path.read_bytes().index(f'"event_id": "{event_id}"'.encode()) // 4096 + 1


def _salvaged(path: Path) -> list[str]:
    conn, moved = open_db(path)
    assert moved is not None
    return [json.loads(payload)["event_id"] for _, _, payload in Outbox(conn, 1000).after(0, 1000)]


def test_salvage_reads_every_row_below_a_damaged_root_page(tmp_path):
    path = tmp_path / "kiosk.db"
    ids = _waiting_checkins(path, 60)
    with sqlite3.connect(path) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'outbox'").fetchone()
    _damage_page(path, root[0])
    assert _salvaged(path) == ids


def test_salvage_loses_only_the_rows_of_a_damaged_data_page(tmp_path):
    path = tmp_path / "kiosk.db"
    ids = _waiting_checkins(path, 80)
    page = _page_of(path, ids[40])
    on_page = [event_id for event_id in ids if _page_of(path, event_id) == page]
    _damage_page(path, page)
    assert 8 <= len(on_page) <= 20
    assert _salvaged(path) == [event_id for event_id in ids if event_id not in on_page]


def test_salvage_reads_a_file_whose_header_is_zeroed(tmp_path):
    path = tmp_path / "kiosk.db"
    ids = _waiting_checkins(path, 60)
    with open(path, "r+b") as file:
        file.write(bytes(100))
    assert _salvaged(path) == ids


def test_salvage_takes_rows_still_in_the_wal_and_not_deleted_ones(tmp_path):
    path = tmp_path / "kiosk.db"
    ids = _waiting_checkins(path, 40)
    conn, _ = open_db(path)
    outbox = Outbox(conn, max_rows=1000)
    outbox.remove(list(range(1, 21)))  # delivered: their pages go to the freelist
    outbox.add("late-one", json.dumps({"v": 1, "event_id": "late-one"}).encode())
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    outbox.add("in-wal-only", json.dumps({"v": 1, "event_id": "in-wal-only"}).encode())
    with open(path, "r+b") as file:  # the copy a crash left: WAL still beside it
        file.write(bytes(100))
    assert _salvaged(path) == [*ids[20:], "late-one", "in-wal-only"]
    conn.close()
