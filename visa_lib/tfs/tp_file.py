"""Frame-sampler answers read from a file: VISA's published LLaMA-VID results, or our own.

VISA's authors publish their TFS output for ReVOS as ``meta_expressions_valid__llamavid.json``: a copy
of the split's meta file in which every expression carries a float ``tp``, the mean of LLaMA-VID's
ten parsed answers (docs/predict.md). With it ReVOS can be reproduced without running LLaMA-VID::

    {"videos": {"<video>": {"frames": [...], "expressions": {"<exp_id>": {"exp": "...", "tp": 0.45}}}}}

``visa predict`` writes ``target_frames.json`` in a flat form that is read the same way::

    {"<video>/<exp_id>": {"tp": 0.45, "target_frame": 13, "answers": [...], ...}}

The target frame is VISA's ``int(N * tp)`` clamped to ``N - 1``, N = the frames of the video.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from visa_lib.tfs.samplers import FrameSampler, TFSResult


def read_tp_file(path: str | Path) -> dict[str, float]:
    """``{"<video>/<exp_id>": tp}`` from VISA's ``*_llamavid.json`` or a ``target_frames.json``.

    Expressions without a ``tp`` (or with ``null``) are left out; :meth:`TpFileSampler.check_queries`
    names them when they are asked for.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, an unknown layout, or a ``tp`` that is not a number in ``[0, 1]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"--tp-file {path}: no such file; give VISA's meta_expressions_valid__llamavid.json "
            "or a target_frames.json written by visa predict"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--tp-file {path}: not a JSON file ({err})") from None
    if isinstance(data, Mapping) and isinstance(data.get("videos"), Mapping):
        entries = {
            f"{video}/{exp_id}": exp
            for video, meta in data["videos"].items()
            for exp_id, exp in (meta.get("expressions") or {}).items()
        }
    elif isinstance(data, Mapping):
        entries = dict(data)
    else:
        raise ValueError(
            f"--tp-file {path}: expected a JSON object ({{'videos': ...}} or {{'video/exp': ...}})"
        )
    tps: dict[str, float] = {}
    for key, entry in entries.items():
        tp = entry.get("tp") if isinstance(entry, Mapping) else None
        if tp is None:  # an expression without an answer: reported as missing when it is asked for
            continue
        if not isinstance(tp, (int, float)) or isinstance(tp, bool) or not 0.0 <= tp <= 1.0 or math.isnan(tp):
            raise ValueError(f"--tp-file {path}: expression {key!r} has no 'tp' in [0, 1] (got {tp!r})")
        tps[key] = float(tp)
    if not tps:
        raise ValueError(f"--tp-file {path}: no expression carries a 'tp'")
    return tps


class TpFileSampler(FrameSampler):
    """TFS backend that reads each expression's ``tp`` from a file instead of asking a model.

    Arguments:
        path (str | Path): VISA's ``meta_expressions_<split>__llamavid.json`` or a ``target_frames.json``.
    """

    name = "tp_file"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.tps = read_tp_file(self.path)

    def check_queries(self, keys: Sequence[str]) -> None:
        """Raise one ValueError naming every ``"<video>/<exp_id>"`` (and video) missing from the file."""
        missing = [k for k in keys if k not in self.tps]
        if not missing:
            return
        videos = sorted({k.rsplit("/", 1)[0] for k in missing})
        known = {k.rsplit("/", 1)[0] for k in self.tps}
        absent = [v for v in videos if v not in known]
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        where = f"; videos not in the file at all: {', '.join(absent[:10])}" if absent else ""
        raise ValueError(
            f"--tp-file {self.path}: {len(missing)} expression(s) have no 'tp': {shown}{where}; "
            "use the file made for this split"
        )

    def draw(self, video, text, num_answers, seed, gt_masks=None) -> list[str]:
        raise NotImplementedError(
            "TpFileSampler reads tp from its file; call choose(frames, texts, keys=...)"
        )

    def choose(self, frames, texts, *, keys=None, gt_masks=None, num_answers=None) -> list[TFSResult]:
        """``tp`` of each query looked up by its key ``"<video>/<exp_id>"`` (frames are not read)."""
        if keys is None or len(keys) != len(texts):
            raise ValueError(
                f"TpFileSampler ({self.path}): pass keys=['<video>/<exp_id>', ...], one per query "
                "(visa predict does); the file is indexed by expression, not by text"
            )
        self.check_queries(keys)
        return [TFSResult.from_tp(self.tps[k], len(frames)) for k in keys]
