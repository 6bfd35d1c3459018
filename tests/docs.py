"""README.md and docs/*.md read as data: their shell blocks, the markers that say what keeps
each block true, and their relative links and anchors.

Every ```` ```sh ```` or ```` ```console ```` block stands right after a marker comment:

    <!-- run-by: tests/system/test_docs_commands.py::test_member_cards_are_made_as_documented -->
    <!-- needs: a Pi -->

``run-by`` names one or more tests (comma-separated) that run the block's commands;
``needs`` says why no test here can (one of ``NEEDS``). ``tests/unit/test_docs.py`` checks
the markers and the links; ``tests/system/test_docs_commands.py`` runs the blocks that name
it, as they are written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests import ROOT

SHELL = ("sh", "console")
NEEDS = {
    "a Pi": "Raspberry Pi OS on a Pi: its packages, its hardware, its paths",
    "root": "changes the system: apt-get, /etc, systemd",
    "hardware": "a display, reader or lights fitted",
    "a broker and kiosks": "a broker with kiosks on it and a staff key they trust",
    "minutes of CPU": "benchmarks: minutes of a quiet machine",
    "a change to review": "rewrites files in the checkout after a deliberate change",
    "the network": "PyPI or another server on the internet: the tests run offline",
}

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(run-by|needs):\s*(.*?)\s*-->$")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def documents() -> list[Path]:
    """The pages the rules hold for: README and every page in docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced code block, with the marker comment on the line before it (if any)."""

    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: tuple[str, str] | None  # ("run-by", "tests/...::name, ...") or ("needs", "a Pi")

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def run_by(self) -> list[str]:
        if self.marker is None or self.marker[0] != "run-by":
            return []
        return [name.strip() for name in self.marker[1].split(",") if name.strip()]

    def commands(self) -> str:
        """What a user types: a sh block as it is; a console block's ``$ `` lines (and the
        lines continuing them after a backslash)."""
        return self.text if self.lang == "sh" else self._console()[0]

    def shown_output(self) -> str:
        """What a console block shows the commands printing."""
        return self._console()[1]

    def _console(self) -> tuple[str, str]:
        typed, printed = "", ""
        continued = False
        for line in self.text.splitlines(keepends=True):
            if line.startswith("$ ") or continued:
                typed += line.removeprefix("$ ")
                continued = line.rstrip("\n").endswith("\\")
            else:
                printed += line
        return typed, printed


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end] != "```":
            end += 1
        before = lines[index - 1] if index > 0 else ""
        marker = _MARKER.match(before)
        found.append(Block(path, index + 1, opening.group(1), "".join(
            line + "\n" for line in lines[index + 1:end]),
            (marker.group(1), marker.group(2)) if marker else None))
        index = end + 1
    return found


def shell_blocks(paths: list[Path] | None = None) -> list[Block]:
    return [block for path in (paths or documents()) for block in blocks(path)
            if block.lang in SHELL]


def run_by(test: str) -> list[Block]:
    """The shell blocks whose marker names ``test`` (``tests/...py::test_name``)."""
    return [block for block in shell_blocks() if test in block.run_by]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _prose(path):
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            found.add(f"{base}-{count}" if count else base)
            seen[base] = count + 1
    return found


def links(path: Path) -> list[str]:
    """Every link and image target outside code blocks and code spans."""
    found: list[str] = []
    for line in _prose(path):
        found += _LINK.findall(re.sub(r"`[^`]*`", "", line))
    return found


def markers_without_block(path: Path) -> list[int]:
    """Lines holding a marker (outside code blocks) that does not stand right before a
    shell block."""
    marked = {block.line - 1 for block in blocks(path) if block.lang in SHELL}
    return [number for number, line in _numbered_prose(path)
            if _MARKER.match(line) and number not in marked]


def _numbered_prose(path: Path) -> list[tuple[int, str]]:
    """The page's lines outside code blocks, with their numbers."""
    out: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if fenced:
            fenced = line != "```"
        elif _FENCE.match(line):
            fenced = True
        else:
            out.append((number, line))
    return out


def _prose(path: Path) -> list[str]:
    return [line for _, line in _numbered_prose(path)]


def problems(paths: list[Path] | None = None) -> list[str]:
    """Everything that breaks the rules, one line each (empty when all is well)."""
    paths = paths or documents()
    found: list[str] = []
    for block in shell_blocks(paths):
        if block.marker is None:
            found.append(f"{block.where}: a shell block with no run-by or needs marker before it")
        elif block.marker[0] == "needs" and block.marker[1] not in NEEDS:
            found.append(f"{block.where}: needs '{block.marker[1]}' is none of {sorted(NEEDS)}")
        elif block.marker[0] == "run-by" and not block.run_by:
            found.append(f"{block.where}: run-by names no test")
        for test in block.run_by:
            if not _test_exists(test):
                found.append(f"{block.where}: run-by names {test}, which does not exist")
    for path in paths:
        where = path.relative_to(ROOT)
        found += [f"{where}:{line}: a marker before no shell block"
                  for line in markers_without_block(path)]
        for target in links(path):
            problem = _broken(path, target)
            if problem:
                found.append(f"{where}: link ({target}): {problem}")
    return found


def _test_exists(test: str) -> bool:
    file, _, name = test.partition("::")
    path = ROOT / file
    return (file.startswith("tests/") and name.startswith("test_") and path.is_file()
            and re.search(rf"^def {re.escape(name)}\(", path.read_text(), re.M) is not None)


def _broken(page: Path, target: str) -> str | None:
    if re.match(r"[a-z]+:", target):  # https:, mailto:
        return None
    file, _, anchor = target.partition("#")
    linked = (page.parent / file).resolve() if file else page
    if not linked.exists():
        return "no such file"
    if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
        return f"no heading #{anchor} in {linked.relative_to(ROOT)}"
    return None
