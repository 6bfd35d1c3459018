"""The benchmarks under tools/bench are run as scripts, so their own folder comes first on
``sys.path``: a script named like a package of the project shadows it (``backend.py`` did,
and ``startup.py`` no longer started). Each one must at least start and print its usage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import ROOT

SCRIPTS = sorted((ROOT / "tools" / "bench").glob("*.py"))
PACKAGES = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists()}


def test_no_benchmark_is_named_like_a_package_of_the_project():
    assert {"kiosk", "drivers", "backend"} <= PACKAGES
    assert not {script.stem for script in SCRIPTS} & PACKAGES


@pytest.mark.parametrize("script", SCRIPTS, ids=[script.name for script in SCRIPTS])
def test_each_benchmark_starts_and_says_how_to_run_it(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
