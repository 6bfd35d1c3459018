"""README and docs/ keep their promises about themselves: every shell block is run by a named
test or says what it needs, and every relative link and anchor leads somewhere
(the rules: tests/docs.py; how to use them: docs/development.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import ROOT
from tests.docs import NEEDS, documents, problems, run_by, shell_blocks, slug


def test_every_shell_block_is_run_by_a_test_or_says_what_it_needs_and_every_link_resolves():
    assert problems() == []


def test_the_rules_catch_each_kind_of_slip(tmp_path, monkeypatch):
    monkeypatch.setattr("tests.docs.ROOT", tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_real.py").write_text("def test_real():\n    pass\n")
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "# Page", "",
        "```sh", "kiosk --help", "```", "",
        "<!-- needs: a spaceship -->", "```sh", "kiosk run", "```", "",
        "<!-- run-by: tests/test_real.py::test_gone -->", "```console", "$ kiosk", "```", "",
        "<!-- run-by: tests/test_real.py::test_real -->", "```sh", "true", "```", "",
        "<!-- needs: root -->", "",
        "[fine](other.md#a-section) [fine](#page) [gone](missing.md)",
        "[no anchor](other.md#nowhere) [here](#nowhere-here) [web](https://example.org)",
        "`[in code](missing.md)`", ""]))
    found = problems([page])
    assert len(found) == 7, found
    for expected in ("page.md:3: a shell block with no run-by or needs marker",
                     "page.md:8: needs 'a spaceship'",
                     "page.md:13: run-by names tests/test_real.py::test_gone, which does not",
                     "page.md:22: a marker before no shell block",
                     "link (missing.md): no such file",
                     "link (other.md#nowhere): no heading #nowhere in other.md",
                     "link (#nowhere-here): no heading #nowhere-here in page.md"):
        assert any(expected in problem for problem in found), (expected, found)


@pytest.mark.parametrize(("heading", "anchor"), [
    ("What the kiosk guarantees, and what it needs", "what-the-kiosk-guarantees-and-what-it-needs"),
    ("On a Debian 12 / Raspberry Pi OS broker", "on-a-debian-12--raspberry-pi-os-broker"),
    ("`kiosk status` for a TLS kiosk", "kiosk-status-for-a-tls-kiosk"),
    ("64-bit ARM, without a Pi", "64-bit-arm-without-a-pi"),
])
def test_anchors_are_made_as_github_makes_them(heading, anchor):
    assert slug(heading) == anchor


def test_readmes_test_command_is_exactly_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    (ci_command,) = re.findall(r"^exec (.+)$", ci, re.M)
    (quickstart,) = [block for block in shell_blocks([ROOT / "README.md"])
                     if "tools/dev.sh test" in block.text]
    typed = [line.split("#")[0].strip() for line in quickstart.commands().splitlines()]
    assert ci_command in typed


def test_each_test_that_runs_blocks_finds_some():
    """A test named by a marker must find a block naming it: a renamed test shows here."""
    runner = ROOT / "tests" / "system" / "test_docs_commands.py"
    names = re.findall(r"^def (test_\w+)\(", runner.read_text(), re.M)
    assert names
    for name in names:
        assert run_by(f"tests/system/test_docs_commands.py::{name}"), name


def test_the_vocabulary_of_needs_is_what_development_md_lists():
    development = (ROOT / "docs" / "development.md").read_text()
    for need in NEEDS:
        assert f"`needs: {need}`" in development, need


def test_every_page_of_docs_is_reachable_from_readme():
    linked = {Path(target.partition("#")[0]).name
              for target in re.findall(r"\]\(docs/([^)#\s]+)", (ROOT / "README.md").read_text())}
    pages = {path.name for path in documents()[1:]}
    assert pages <= linked, pages - linked
