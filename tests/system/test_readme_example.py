"""The integrators' example (docs/simulation.md), run as an integrator runs it: copied out into a
test file of their own, with the fixtures the installed ``kiosk`` pytest plugin gives.

It once failed 3 runs in 15 (``0 == 10``: "drained" meant the broker had the check-in,
not that the backend had credited it); it runs several times here, and
``RUNS=50 pytest tests/system/test_readme_example.py`` runs it as often as you like.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests import ROOT


def _example() -> str:
    readme = (ROOT / "docs" / "simulation.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (example,) = [block for block in blocks if "def test_my_backend_credits_a_visit" in block]
    return example


def test_readmes_integrator_example_passes_every_time(tmp_path):
    runs = int(os.environ.get("RUNS", "3"))
    example = _example()
    copies = [example.replace("def test_my_backend_credits_a_visit",
                              f"def test_run_{n}") for n in range(runs)]
    (tmp_path / "test_integration.py").write_text("\n\n".join(copies))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(tmp_path / "test_integration.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60 + 20 * runs)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{runs} passed" in result.stdout
