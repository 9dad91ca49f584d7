"""The metrics log of a training run: ``metrics.jsonl`` (a JSON object a line), TensorBoard if installed."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Append-only log in ``output_dir/metrics.jsonl``; scalars also go to ``output_dir/tensorboard``.

    Arguments:
      output_dir (Path | None): None logs nothing (a run without an output folder).
      enabled (bool): False on every process but the main one.
    """

    def __init__(self, output_dir: Path | None, enabled: bool = True) -> None:
        self.path = None
        self.writer = None
        if output_dir is None or not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        self.path = output_dir / "metrics.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            SummaryWriter = None  # noqa: N806
        if SummaryWriter is not None:
            self.writer = SummaryWriter(str(output_dir / "tensorboard"))

    def write(self, record: dict) -> None:
        """Append ``record``; its numbers are TensorBoard scalars at ``record["step"]``."""
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        if self.writer is not None and "step" in record:
            prefix = record.get("phase", record.get("event", "train"))
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
