"""paths.swap_in / restore_replaced: replacing a finished result never leaves the folder without one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from visa_lib import paths


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "mask.png").write_text(text)
    return path


def _interrupt_rename_of(monkeypatch, source_name: str) -> None:
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name == source_name:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(paths.os, "replace", replace)


def test_swap_in_replaces_and_leaves_nothing_aside(tmp_path):
    final = _folder(tmp_path / "0", "old")
    paths.swap_in(_folder(tmp_path / ".0.partial", "new"), final)
    assert (final / "mask.png").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0"]
    paths.swap_in(_folder(tmp_path / ".1.partial", "first"), tmp_path / "1")  # nothing to replace
    assert (tmp_path / "1" / "mask.png").read_text() == "first"


def test_an_interrupted_swap_keeps_the_old_result_and_restore_puts_it_back(tmp_path, monkeypatch):
    final = _folder(tmp_path / "0", "old")
    _interrupt_rename_of(monkeypatch, ".0.partial")  # Ctrl-C after the old result went aside
    with pytest.raises(KeyboardInterrupt):
        paths.swap_in(_folder(tmp_path / ".0.partial", "new"), final)
    monkeypatch.undo()
    assert not final.exists() and (tmp_path / ".0.replaced" / "mask.png").read_text() == "old"
    paths.restore_replaced(tmp_path)
    assert (final / "mask.png").read_text() == "old" and not (tmp_path / ".0.replaced").exists()


def test_restore_drops_an_old_result_whose_replacement_arrived(tmp_path):
    _folder(tmp_path / ".0.replaced", "old")  # interrupted after the new result moved in
    _folder(tmp_path / "0", "new")
    paths.restore_replaced(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0"]
    assert (tmp_path / "0" / "mask.png").read_text() == "new"
