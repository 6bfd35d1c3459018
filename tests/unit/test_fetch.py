"""Fetching a release's files (kiosk/provisioning/fetch.py) from a real HTTP server on
loopback: a cut connection resumes with Range, a full disk is found before the first
byte, and a file that is not the signed one is never put in place."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.provisioning.fetch import MARGIN, FetchError, fetch_all
from kiosk.trust.release import ReleaseFile

SIZE = 300_000


class Served:
    """A web server serving one folder with Range, that can cut its first answer short."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cut_after: int | None = None  # bytes sent before the first answer is cut
        self.ranges: list[str | None] = []
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = served.folder / self.path.lstrip("/")
                data = path.read_bytes() if path.is_file() else None
                if data is None:
                    self.send_error(404)
                    return
                asked = self.headers.get("Range")
                served.ranges.append(asked)
                start = int(asked.split("=")[1].rstrip("-")) if asked else 0
                self.send_response(206 if asked else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if asked:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                body = data[start:]
                if served.cut_after is not None:
                    body, served.cut_after = body[:served.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Served, ReleaseFile]]:
    folder = tmp_path / "www"
    folder.mkdir()
    data = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)
    (folder / "big-1.0-py3-none-any.whl").write_bytes(data)
    server = Served(folder)
    yield server, ReleaseFile("big-1.0-py3-none-any.whl", SIZE,
                              hashlib.sha256(data).hexdigest(), "any")
    server.close()


def test_a_cut_connection_resumes_where_it_stopped(served, tmp_path):
    server, file = served
    server.cut_after = 100_000
    fetch_all(server.url, [file], tmp_path / "in", pause_s=0.01)
    assert server.ranges == [None, "bytes=100000-"]  # the second request asked for the rest
    fetched = tmp_path / "in" / file.name
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == file.sha256
    assert not (tmp_path / "in" / f"{file.name}.part").exists()


def test_an_unreachable_server_fails_the_fetch_with_the_reason(served, tmp_path):
    server, file = served
    server.close()  # the server is gone: nothing can be fetched
    with pytest.raises(FetchError, match=file.name):
        fetch_all(server.url, [file], tmp_path / "in", attempts=2, pause_s=0.01)
    assert not (tmp_path / "in" / file.name).exists()


def test_a_file_that_is_not_the_signed_one_is_never_put_in_place(served, tmp_path):
    server, file = served
    wrong = ReleaseFile(file.name, file.size, "0" * 64, "any")
    with pytest.raises(FetchError, match="not the file the release signed"):
        fetch_all(server.url, [wrong], tmp_path / "in", pause_s=0.01)
    assert list((tmp_path / "in").iterdir()) == []  # no file, no part to resume from


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs): less than the safety margin plus one file."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_free_space_is_checked_before_the_first_byte(served, small_disk):
    server, file = served
    assert MARGIN > 4 * 2**20  # the margin alone does not fit on this disk
    with pytest.raises(FetchError, match="not enough space"):
        fetch_all(server.url, [file], small_disk / "in", pause_s=0.01)
    assert server.ranges == []  # nothing was even asked for


def test_a_file_in_place_that_is_not_the_signed_one_is_fetched_again(served, tmp_path):
    """The right size is not enough: a file that rotted on the card, or a release signed
    again under the same name, is fetched anew rather than refused by the updater forever."""
    server, file = served
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / file.name).write_bytes(b"\0" * SIZE)
    fetch_all(server.url, [file], tmp_path / "in", pause_s=0.01)
    assert server.ranges == [None]
    assert hashlib.sha256((tmp_path / "in" / file.name).read_bytes()).hexdigest() == file.sha256
