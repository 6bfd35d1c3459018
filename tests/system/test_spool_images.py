"""Huge images dropped into the simulated camera's spool of the real daemon: each is refused
from its header, with a line saying why, and the daemon's memory stays where it was."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from kiosk.ops.cards import qr_card
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import sim_config, wait_for

HUGE = 9000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_thirty_9000_pixel_images_are_refused_from_their_header_and_memory_stays(
        tmp_path, mosquitto):
    config = sim_config(tmp_path / "state", mosquitto.port, device_id="spool-1")
    spool = Path(config.camera.spool_dir)
    huge = tmp_path / "huge.png"
    Image.new("L", (HUGE, HUGE), 255).save(huge)  # 81 megapixels, under PIL's bomb limit
    (tmp_path / "kiosk.toml").write_text(to_toml(config))
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "run", "--config",
                                   str(tmp_path / "kiosk.toml")], stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "connected to" in log.read_text(), timeout=30, what="the daemon up")
        spool.mkdir(parents=True, exist_ok=True)
        # A customer's card first: the decoder and the screens are loaded lazily, and that
        # warm-up is not what the huge images may cost.
        qr_card("LOY-WARMUP1").save(spool / ".card.png")
        (spool / ".card.png").rename(spool / "card.png")
        wait_for(lambda: not any(spool.iterdir()), timeout=30, what="the card taken away")
        time.sleep(1.0)
        before = _rss_mb(daemon.pid)
        for n in range(30):
            shutil.copy(huge, spool / f".huge-{n}.png")
            (spool / f".huge-{n}.png").rename(spool / f"huge-{n:02d}.png")
        wait_for(lambda: not any(spool.iterdir()), timeout=120, what="every image taken away")
        after = _rss_mb(daemon.pid)
        assert after - before < 20, f"RSS {before:.0f} MB -> {after:.0f} MB"
        refusals = [line for line in log.read_text().splitlines() if "too large" in line]
        assert f"huge-00.png is too large ({HUGE}x{HUGE}" in refusals[0]
        assert "more are held back" in refusals[-1]  # the repeat limit; and counted
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
