"""An explorer for JupyterLab: pick a video, type a query, see what each VISA stage did.

::

    from visa_lib.widgets import Explorer
    explorer = Explorer()       # the toy pipeline, the bundled ReasonVOS-lite validation videos
    explorer                    # shows the controls in a notebook

The explorer only calls the library's pipeline (:func:`visa_lib.pipeline.run_on_video`) and reads
the public fields of its result: the sampler's ``answers`` and ``tp``, the ``target_frame``, VISA's
``target_mask`` and the propagated ``masks``. It shows

* the histogram of the sampler's parsed answers (VISA asks K = 10 times; ``docs/pipeline.md``),
* the chosen target frame with VISA's mask,
* every frame with XMem's propagated mask, scrubbed with a slider.

Every picture is a PNG drawn by :mod:`visa_lib.viz`, so it looks like the notebooks' figures.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visa_lib.tfs.answers import parse_percentage
from visa_lib.viz import hex_colour, overlay

#: Longest side of the frames shown in the explorer (pixels; bigger frames are downscaled).
DISPLAY_SIDE = 360


def _png(image: np.ndarray, max_side: int = DISPLAY_SIDE) -> bytes:
    """PNG bytes of ``uint8 [H,W,3]``, downscaled so the longer side is at most ``max_side``."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(image))
    scale = max_side / max(picture.size)
    if scale < 1:
        picture = picture.resize(
            (round(picture.width * scale), round(picture.height * scale)), Image.BILINEAR
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def answer_histogram(answers: Sequence[str], tp: float | None, num_frames: int, target: int, ax=None):
    """Draw how many of the sampler's answers chose each percentage mark; returns the figure.

    Arguments:
      answers: the sampler's raw answers (unparsable ones are counted apart).
      tp: their mean (None when the target frame was given, not sampled).
      num_frames: N, frames in the video; target: the chosen frame ``min(int(N * tp), N - 1)``.
      ax: the matplotlib axes to draw on (default: a new 4.2 x 2.4 inch figure).
    """
    import matplotlib.pyplot as plt

    parsed = [parse_percentage(a) for a in answers]
    marks = np.arange(11) / 10
    counts = [sum(p is not None and round(p, 1) == m for p in parsed) for m in marks]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 2.4))
    fig = ax.figure
    ax.bar(marks * 100, counts, width=8, color=hex_colour(1))
    if tp is not None:
        ax.axvline(tp * 100, color=hex_colour(5), linewidth=2, label=f"tp = {tp:.2f} -> frame {target}")
        ax.legend(loc="upper left")
    unparsed = sum(p is None for p in parsed)
    ax.set_xlabel("answer (% of the video)" + (f"; {unparsed} unparsable" if unparsed else ""))
    ax.set_ylabel("answers")
    ax.set_xlim(-6, 106)
    ax.set_ylim(0, max(counts + [1]) + 1)
    ax.set_title(f"sampler: {len(answers)} answers, N = {num_frames} frames")
    fig.tight_layout()
    return fig


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


class Explorer:
    """The explorer's controls and pictures (ipywidgets), around one pipeline.

    Arguments:
      pipeline (VisaPipeline | None): from :func:`visa_lib.pipeline.build_pipeline`; default: the toy
        pipeline, built on the first query (a few seconds).
      split (RevosSplit | None): the bundled videos offered in the menu (default: ReasonVOS-lite valid).
      video (str | None): the video selected at the start (default: the split's first).

    Attributes (widgets, for tests and custom layouts): ``video_menu``, ``path_box``, ``query``,
    ``run_button``, ``status``, ``histogram``, ``target_image``, ``slider``, ``frame_label``,
    ``frame_image``; ``result`` is the last :class:`~visa_lib.pipeline.VideoSegmentation`.
    """

    def __init__(self, pipeline=None, split=None, video: str | None = None) -> None:
        import ipywidgets as w

        if split is None:
            from visa_lib.data.revos import load_revos
            from visa_lib.paths import REASONVOS_LITE

            split = load_revos(REASONVOS_LITE, "valid")
        self.split = split
        self.pipeline = pipeline
        self.result = None
        self.frames = None
        names = list(split.videos)
        if video is not None and video not in split.videos:
            raise ValueError(
                f"Explorer: video {video!r} is not in split {split.split!r}; pick one of {names[:3]}..."
            )

        self.video_menu = w.Dropdown(options=names, value=video or names[0], description="video")
        self.path_box = w.Text(placeholder="or a video file / folder of frames", description="file")
        self.query = w.Text(
            placeholder="type a query, e.g. which animal eats hay?",
            description="query",
            layout=w.Layout(width="420px"),
        )
        self.run_button = w.Button(description="Segment", button_style="primary", icon="play")
        self.status = w.HTML(value="Choose a video, type a query and press Segment.")
        self.histogram = w.Image(format="png")
        self.target_image = w.Image(format="png")
        self.slider = w.IntSlider(
            value=0,
            min=0,
            max=0,
            description="frame",
            disabled=True,
            continuous_update=True,
            layout=w.Layout(width="340px"),
        )
        self.frame_label = w.HTML()
        self.frame_image = w.Image(format="png")
        for widget, name in (
            (self.query, "visa-query"),
            (self.run_button, "visa-run"),
            (self.status, "visa-status"),
            (self.histogram, "visa-histogram"),
            (self.target_image, "visa-target"),
            (self.slider, "visa-slider"),
            (self.frame_label, "visa-frame-label"),
            (self.frame_image, "visa-frame"),
        ):
            widget.add_class(name)

        self.run_button.on_click(lambda _: self.run())
        self.query.observe(lambda change: self._query_typed(change["new"]), names="value")
        self.slider.observe(lambda change: self.show_frame(change["new"]), names="value")
        self.video_menu.observe(lambda _: self._video_changed(), names="value")
        self.path_box.observe(lambda _: self._video_changed(), names="value")

        pictures = w.HBox(
            [
                w.VBox([w.HTML("<b>sampler's answers</b>"), self.histogram]),
                w.VBox([w.HTML("<b>target frame: VISA's mask</b>"), self.target_image]),
                w.VBox([w.HTML("<b>propagated masks</b>"), self.slider, self.frame_label, self.frame_image]),
            ]
        )
        self.widget = w.VBox(
            [
                w.HBox([self.video_menu, self.path_box]),
                w.HBox([self.query, self.run_button]),
                self.status,
                pictures,
            ]
        )
        self._video_changed()

    # -- notebook display -------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- video ----------------------------------------------------------------------------------------
    def _video_changed(self) -> None:
        """Load the chosen video lazily and show its first frame."""
        from visa_lib.data.video import SplitVideoFrames, VideoFrames

        path = self.path_box.value.strip()
        try:
            self.frames = (
                VideoFrames(Path(path).expanduser())
                if path
                else SplitVideoFrames(self.split, self.video_menu.value)
            )
        except (FileNotFoundError, ValueError) as error:
            self._say(f"cannot read {html.escape(path)}: {html.escape(str(error))}", error=True)
            return
        self.result = None
        self.histogram.value = b""
        self.target_image.value = b""
        self.slider.value = 0
        self.slider.max = len(self.frames) - 1
        self.slider.disabled = False
        self.show_frame(0)
        self._say(
            f"{html.escape(self.video_name)}: {len(self.frames)} frames; type a query and press Segment."
        )

    @property
    def video_name(self) -> str:
        """The chosen video: the file's name, else the menu's."""
        path = self.path_box.value.strip()
        return Path(path).name if path else self.video_menu.value

    def _query_typed(self, text: str) -> None:
        if text.strip():
            self._say(
                f'press Segment to find "{html.escape(text.strip())}" in {html.escape(self.video_name)}'
            )

    def _say(self, text: str, error: bool = False) -> None:
        colour = hex_colour(5) if error else "inherit"
        self.status.value = f'<span style="color:{colour}">{text}</span>'

    # -- running --------------------------------------------------------------------------------------
    def run(self, text: str | None = None):
        """Segment what the query refers to in the chosen video; update every picture.

        Arguments:
          text (str | None): the query (default: what is typed in the query box; given, it is typed there).
        Returns:
          VideoSegmentation | None: the pipeline's result (None after an error, which the status shows).
        """
        from visa_lib.pipeline import build_pipeline, run_on_video

        if text is not None:
            self.query.value = text
        query = self.query.value.strip()
        if not query:
            self._say("type a query first", error=True)
            return None
        if self.frames is None:
            self._say("choose a video first", error=True)
            return None
        self.run_button.disabled = True
        try:
            if self.pipeline is None:
                self._say("building the toy pipeline (first query only)...")
                self.pipeline = build_pipeline("toy")
            self._say(f'segmenting "{html.escape(query)}" in {html.escape(self.video_name)}...')
            result = run_on_video(self.frames, query, self.pipeline, progress=False)
        except (ValueError, FileNotFoundError) as error:
            self._say(html.escape(str(error)), error=True)
            return None
        finally:
            self.run_button.disabled = False
        self.result = result
        self._show_result()
        return result

    def _show_result(self) -> None:
        result, n = self.result, len(self.frames)
        found = (
            f"found in {int(result.masks.reshape(n, -1).any(1).sum())} of {n} frames"
            if result.found
            else "no target (VISA's mask is empty)"
        )
        tp = "given" if result.tp is None else f"tp = {result.tp:.2f}"
        self.histogram.value = _figure_png(
            answer_histogram(result.answers, result.tp, n, result.target_frame)
        )
        self.target_image.value = _png(overlay(self.frames[result.target_frame], result.target_mask))
        self.slider.value = result.target_frame
        self.show_frame(result.target_frame)
        # the status line last: once it names the target frame, every picture is in place
        self._say(f'"{html.escape(result.text)}": {tp}, target frame {result.target_frame} of {n}; {found}')

    def show_frame(self, index: int) -> None:
        """Show frame ``index`` with the propagated mask (the bare frame before the first query)."""
        if self.frames is None or not 0 <= index < len(self.frames):
            return
        frame = self.frames[index]
        text = f"frame {index} of {len(self.frames)}"
        if self.result is not None:
            mask = self.result.masks[index]
            frame = overlay(frame, mask)
            text += (" (target frame)" if index == self.result.target_frame else "") + (
                f": object, {int(mask.sum())} pixels" if mask.any() else ": no object"
            )
        self.frame_label.value = text
        self.frame_image.value = _png(frame)

    def figure(self, frames_shown: int = 4):
        """The explorer's state as one matplotlib figure (for saved notebooks and reports)."""
        import matplotlib.pyplot as plt

        from visa_lib.viz import show_image, show_mask

        if self.result is None:
            raise ValueError("Explorer.figure: run a query first (explorer.run('...'))")
        result, n = self.result, len(self.frames)
        picks = np.unique(np.linspace(0, n - 1, frames_shown).round().astype(int))
        fig = plt.figure(figsize=(12, 4.6))
        grid = fig.add_gridspec(2, max(len(picks), 2))
        answer_histogram(
            result.answers, result.tp, n, result.target_frame, fig.add_subplot(grid[0, : len(picks) // 2])
        )
        target_ax = fig.add_subplot(grid[0, len(picks) // 2 :])
        show_image(self.frames[result.target_frame], target_ax, f"target frame {result.target_frame}")
        show_mask(result.target_mask, target_ax)
        for col, t in enumerate(picks):
            ax = fig.add_subplot(grid[1, col])
            show_image(self.frames[t], ax, f"frame {t}")
            show_mask(result.masks[t], ax)
        fig.suptitle(f'"{result.text}" in {self.video_name}')
        fig.tight_layout()
        return fig
