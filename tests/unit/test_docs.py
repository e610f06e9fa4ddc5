"""The repository's documents hold together: every link and path that README.md and
docs/*.md mention exists, every document any file names is in the repository, and
none cites a document kept outside it."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_DIRS = {".git", ".venv", "var", "node_modules", "__pycache__", "out", "recpipe.egg-info"}
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".sh", ".toml", ".example", ".ini", ".cfg"}
TOP = sorted(
    p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and p.name != ".git"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
TOPS = "|".join(re.escape(t) for t in TOP)
PATH = re.compile(rf"(?<![\w./<>:-])((?:{TOPS})/[\w./*-]*)")
DOCUMENT = re.compile(r"(?<![\w/.-])([\w./-]*[A-Za-z0-9_]\.md)\b")
# What a reader makes: the env file copied from its example, the benches' output folder.
MADE_BY_THE_READER = ("deploy/recpipe.env", "bench/out")
# Documents of the project's shared space, never to be cited from the repository.
OUTSIDE = ("CONTRACT.md", "PROTOCOLS.md", "STYLE.md")


def repository_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts[:-1])
        if parts & SKIP_DIRS or any(p.startswith(".") and p != ".ci" for p in parts):
            continue
        if path.is_file() and (
            path.suffix in TEXT_SUFFIXES or path.name in ("Makefile", "Dockerfile", "run")
        ):
            found.append(path)
    return found


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_of_a_document_leads_somewhere(doc: Path):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{doc.name}: links to nothing: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_path_a_document_names_exists(doc: Path):
    missing = []
    for found in PATH.findall(doc.read_text()):
        name = found.rstrip(".,;:")
        if name.startswith(MADE_BY_THE_READER):
            continue
        exists = any(ROOT.glob(name)) if "*" in name else (ROOT / name).exists()
        if not exists:
            missing.append(name)
    assert not missing, f"{doc.name} names paths that are not in the repository: {missing}"


def test_every_document_a_file_names_is_in_the_repository():
    names = {p.name for p in ROOT.rglob("*.md") if not set(p.parts) & SKIP_DIRS}
    this = Path(__file__).resolve()
    missing = set()
    for path in repository_files():
        if path.resolve() == this:
            continue
        for found in DOCUMENT.findall(path.read_text(errors="replace")):
            exists = (ROOT / found).exists() or (path.parent / found).exists()
            if not exists and ("/" in found or found not in names):
                missing.add(f"{found} ({path.relative_to(ROOT)})")
    assert not missing, "documents that are not in the repository: " + ", ".join(sorted(missing))


def test_no_file_cites_the_shared_documents():
    this = Path(__file__).resolve()
    citing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in repository_files()
        if path.resolve() != this
        for name in OUTSIDE
        if name in path.read_text(errors="replace")
    ]
    assert not citing, citing


SECTION = re.compile(r'(?:see|section|README|README\.md)[ ,]+"([^"]+)"')


def test_every_section_a_file_names_is_a_heading_of_a_document():
    """A quoted section ("see "Retention"") must be a heading somewhere in the documents."""
    headings = set()
    for doc in DOCS:
        headings |= set(re.findall(r"^#+ (.+)$", doc.read_text(), flags=re.MULTILINE))
    missing = {
        f'"{name}" ({path.relative_to(ROOT)})'
        for path in repository_files()
        for found in SECTION.findall(path.read_text(errors="replace"))
        if (name := " ".join(found.replace("#", " ").split())) not in headings
    }
    assert not missing, "sections that no document has: " + ", ".join(sorted(missing))


def test_the_readme_is_short_and_names_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "make run" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
