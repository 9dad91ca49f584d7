"""Docs live in the repository: no docstring or comment cites a file users do not have.

Every fact the code relies on is written up in ``docs/``; docstrings cite ``docs/<page>.md`` or the
paper. These tests grep the package, the scripts, the tests and the benchmarks for citations of
files outside the repository, and check that every cited ``docs/`` page is in the index.
"""

from __future__ import annotations

import re

from visa_lib.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
SEARCHED = ("visa_lib", "scripts", "tests", "benchmarks")
# Files of the design notes that users never get (the names are assembled so this file does not match).
OUTSIDE = re.compile(
    r"\b("
    + "|".join(["visa" + "_facts", "xmem_davis" + "_facts", "field" + "_anchors", r"DESIGN\.md"])
    + r")\b|(?<![\w/])"
    + "refer"
    + r"ence/\w+\.md"
)
CITED_PAGE = re.compile(r"docs/([\w-]+\.md)")
#: Pages this project's own issue writes (item 5 of issue 14); the others are written alongside.
REQUIRED = (
    "README.md",
    "pipeline.md",
    "merging.md",
    "prompt.md",
    "sam_and_seg_head.md",
    "xmem.md",
    "evaluation.md",
    "training_recipe.md",
)


def _files():
    for folder in SEARCHED:
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md", ".sh", ".txt") and path.is_file():
                yield path


def test_nothing_cites_files_outside_the_repository():
    hits = []
    for path in _files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:90]}")
    assert not hits, "cite docs/<page>.md or the paper instead:\n" + "\n".join(hits)


def test_the_grep_would_catch_a_citation():
    assert OUTSIDE.search("see (" + "refer" + "ence/visa" + "_facts.md §7)")
    assert OUTSIDE.search("as in " + "DESIGN" + ".md")
    assert not OUTSIDE.search("see docs/pipeline.md and the paper")


def test_docs_pages_exist_and_every_cited_page_is_indexed():
    index = (DOCS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", index))
    missing = [page for page in REQUIRED if not (DOCS / page).is_file()]
    assert not missing, f"docs/ lacks {missing}"
    assert set(REQUIRED) - {"README.md"} <= linked, "docs/README.md must link every page"
    cited = {}
    for path in [*_files(), *DOCS.glob("*.md"), REPO_ROOT / "README.md"]:
        for page in CITED_PAGE.findall(path.read_text(errors="replace")):
            cited.setdefault(page, path.relative_to(REPO_ROOT))
    unindexed = {page: str(where) for page, where in cited.items() if page not in linked | {"README.md"}}
    assert not unindexed, f"pages cited but not in docs/README.md: {unindexed}"


def test_docs_name_their_sources():
    for page in REQUIRED[1:]:
        text = (DOCS / page).read_text()
        assert text.splitlines()[0].startswith("# "), page
        assert "Source" in text and "paper" in text, (
            f"docs/{page} must name the paper and the files it draws on"
        )
        assert re.search(r"`[\w/]+\.py`", text), f"docs/{page} must name the original repository's files"
