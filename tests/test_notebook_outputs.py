"""The committed notebooks' outputs describe the data that ships with the repository.

nbval re-runs the notebooks but, with ``--nbval-lax``, compares no printed numbers; these tests read
the saved outputs instead (cheap, no kernel): counts of videos, frames and expressions printed by a
notebook must equal the bundled ReasonVOS-lite's, no output may carry a machine's own folders, and a
progress bar must leave its last state as text (a tqdm widget saved in a notebook shows "0%" once
reopened). Re-execute with ``make notebooks`` when one of these fails.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import cache
from pathlib import Path

import nbformat
import pytest

from visa_lib.data.revos import TYPE_NAMES, load_revos
from visa_lib.paths import REASONVOS_LITE, REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
#: Folders that exist only on the machine that executed a notebook.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|tmp|check|content|root|Users|mnt|scratch)/[\w.-]+")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
TQDM_BAR = re.compile(r"\|\s*(\d+)/(\d+) \[")


def _texts(notebook: Path) -> list[tuple[int, str, str]]:
    """``(cell index, kind, text)`` for every text output: stream name, ``error`` or a mime type."""
    found = []
    for index, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                found.append((index, output.name, output.text))
            elif output.output_type == "error":
                found.append((index, "error", "\n".join(output.traceback)))
            else:
                for mime, value in output.get("data", {}).items():
                    if mime.startswith("text/") or mime.endswith("json"):
                        found.append((index, mime, value if isinstance(value, str) else str(value)))
    return found


@cache
def _split(name: str):
    return load_revos(REASONVOS_LITE, name)


def _ids(paths) -> list[str]:
    return [p.name for p in paths]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 7, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_machine_paths_in_outputs(notebook):
    hits = [
        f"cell {index} ({kind}): {match.group(0)}"
        for index, kind, text in _texts(notebook)
        for match in MACHINE_PATH.finditer(text)
    ]
    assert not hits, f"{notebook.name} prints folders of the machine that ran it: {hits[:5]}"


def test_machine_path_pattern():
    assert MACHINE_PATH.search("summary written to /work/main/outputs/x.json")
    assert MACHINE_PATH.search("RevosSplit(root='/home/me/visa/data')")
    assert not MACHINE_PATH.search("summary written to outputs/01/x.json")
    assert not MACHINE_PATH.search("data_samples/reasonvos_lite/tmp/x and 1.5/work/day")


# -- counts printed by the notebooks ----------------------------------------------------------------
#: ``print(split)``: RevosSplit(root='...', split='valid', videos=24, expressions=105)
SPLIT_REPR = re.compile(r"RevosSplit\(root='[^']*', split='(\w+)', videos=(\d+), expressions=(\d+)\)")
#: notebook 00's table: "valid: 24 videos, 763 frames, {'referring': 49, ...}"
SPLIT_SUMMARY = re.compile(r"^\s*(train|valid): (\d+) videos, (\d+) frames, (\{[^}]*\})\s*$", re.MULTILINE)
#: notebook 01's look at one video: "video 'skimage/x': 32 frames ([...] ...), 240x320" and its expressions
VIDEO_LINE = re.compile(r"^video '([^']+)': (\d+) frames \(.*\), (\d+)x(\d+)$", re.MULTILINE)
EXPRESSION_LINE = re.compile(r"^  (\d+): type (\d)  anno_id \[([\d, ]*)\]  '(.*)'$", re.MULTILINE)


def _printed_counts() -> list[tuple[str, int, str, str]]:
    """``(notebook, cell, kind, text)`` of every stdout output that prints counts of the data."""
    return [
        (notebook.name, index, kind, text)
        for notebook in NOTEBOOKS
        for index, kind, text in _texts(notebook)
        if kind == "stdout"
        and (SPLIT_REPR.search(text) or SPLIT_SUMMARY.search(text) or VIDEO_LINE.search(text))
    ]


def test_notebooks_print_counts_to_check():
    printed = _printed_counts()
    names = {name for name, *_ in printed}
    assert {"00_tour.ipynb", "01_data_and_metrics.ipynb"} <= names, names


@pytest.mark.parametrize("name, cell, kind, text", _printed_counts(), ids=lambda v: str(v)[:24])
def test_printed_counts_match_the_bundled_data(name, cell, kind, text):
    where = f"{name} cell {cell}"
    for split_name, videos, expressions in SPLIT_REPR.findall(text):
        split = _split(split_name)
        assert (int(videos), int(expressions)) == (len(split.videos), split.num_expressions), where
    for split_name, videos, frames, counts in SPLIT_SUMMARY.findall(text):
        split = _split(split_name)
        by_type = Counter(TYPE_NAMES[e.type_id].replace("_", " ") for _, e in split.expressions())
        assert int(videos) == len(split.videos), where
        assert int(frames) == sum(len(v.frames) for v in split.videos.values()), where
        assert ast.literal_eval(counts) == dict(by_type), where
        assert sum(by_type.values()) == split.num_expressions
    for video, frames, height, width in VIDEO_LINE.findall(text):
        split = _split("valid" if "/valid_" in video else "train")
        meta = split.videos[video]
        assert (int(frames), int(height), int(width)) == (len(meta.frames), meta.height, meta.width), where
        printed = EXPRESSION_LINE.findall(text)
        assert len(printed) == len(meta.expressions), where
        for exp_id, type_id, anno_ids, expression in printed:
            exp = meta.expressions[exp_id]
            ids = [int(i) for i in anno_ids.split(",") if i.strip()]
            assert (int(type_id), ids, expression) == (exp.type_id, list(exp.anno_ids), exp.text), where


# -- progress bars ----------------------------------------------------------------------------------
def _last_line(text: str) -> str:
    """What a terminal shows last: the text after the final carriage return or newline."""
    lines = [line for line in re.split(r"[\r\n]", text) if line.strip()]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_progress_bars_leave_a_readable_final_line(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    widget_bars = [
        index
        for index, cell in enumerate(cells)
        for output in cell.get("outputs", [])
        if WIDGET_MIME in output.get("data", {}) and TQDM_BAR.search(output["data"].get("text/plain", ""))
    ]
    assert not widget_bars, f"{notebook.name}: cells {widget_bars} saved tqdm widgets (frozen once reopened)"
    for index, kind, text in _texts(notebook):
        if kind != "stderr" or not TQDM_BAR.search(text):
            continue
        last = _last_line(text)
        bar = TQDM_BAR.search(last)
        assert bar, f"{notebook.name} cell {index}: the last line is not a bar: {last!r}"
        assert "\r" not in text.rstrip("\n").split("\n")[-1], f"{notebook.name} cell {index}: unresolved \\r"
        done, total = int(bar.group(1)), int(bar.group(2))
        assert done == total, f"{notebook.name} cell {index}: the bar stopped at {done}/{total}: {last!r}"


# -- size -------------------------------------------------------------------------------------------
#: Largest committed notebook (bytes): figures are drawn at 100 dpi, so pictures of many frames
#: are made smaller (``viz.shrink``, fewer frames) rather than the resolution lowered.
MAX_NOTEBOOK_BYTES = 1_500_000


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebooks_stay_small(notebook):
    size = notebook.stat().st_size
    assert size < MAX_NOTEBOOK_BYTES, f"{notebook.name} is {size / 1e6:.2f} MB; shrink its pictures"
