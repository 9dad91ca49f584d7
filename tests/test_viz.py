"""Overlays draw the right pixels in the right colours."""

import numpy as np
import pytest

from visa_lib.viz import PALETTE, colour, overlay, save_gif, show_frames


def test_overlay_colours_only_the_mask_and_keeps_the_frame():
    frame = np.full((6, 8, 3), 100, np.uint8)
    mask = np.zeros((6, 8), bool)
    mask[1:5, 2:6] = True
    out = overlay(frame, mask, alpha=0.5, outline=False)
    assert (out[~mask] == 100).all()
    expected = np.round(0.5 * 100 + 0.5 * PALETTE[0].astype(float)).astype(np.uint8)
    assert (out[mask] == expected).all()
    assert (frame == 100).all(), "overlay must not modify its input"


def test_overlay_outline_is_the_mask_border():
    frame = np.zeros((7, 7, 3), np.uint8)
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    out = overlay(frame, mask, alpha=0.0, outline=True)
    drawn = (out != 0).any(axis=2)
    ring = mask.copy()
    ring[2:5, 2:5] = False
    assert (drawn == ring).all()


def test_overlay_several_objects_get_distinct_colours():
    frame = np.zeros((4, 4, 3), np.uint8)
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = masks[1, 3, 3] = True
    out = overlay(frame, masks, alpha=1.0, outline=False)
    assert (out[0, 0] == colour(0)).all() and (out[3, 3] == colour(1)).all()


def test_overlay_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="do not match"):
        overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4), bool))


def test_show_frames_and_gif(tmp_path):
    frames = [np.full((8, 10, 3), i * 20, np.uint8) for i in range(5)]
    masks = [np.eye(8, 10, dtype=bool)] * 5
    fig = show_frames(frames, masks, titles=[str(i) for i in range(5)], columns=3)
    assert len(fig.axes) == 6
    path = save_gif(tmp_path / "a.gif", frames)
    assert path.stat().st_size > 0


def test_shrink_keeps_every_second_pixel_of_frames_and_masks():
    from visa_lib.viz import shrink

    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    mask = np.zeros((4, 6), bool)
    mask[2, 4] = True
    small_frame, small_mask = shrink([frame, mask])
    assert small_frame.shape == (2, 3, 3) and (small_frame == frame[::2, ::2]).all()
    assert small_mask.shape == (2, 3) and small_mask[1, 2]


def test_wide_outline_on_large_frames():
    from visa_lib.viz import OUTLINE_WIDTH

    frame = np.zeros((80, 80, 3), np.uint8)
    mask = np.zeros((80, 80), bool)
    mask[10:70, 10:70] = True
    drawn = (overlay(frame, mask, alpha=0.0) != 0).any(axis=2)
    assert (
        drawn[10, 10 : 10 + 60].all()
        and drawn[10 + OUTLINE_WIDTH - 1, 40]
        and not drawn[10 + OUTLINE_WIDTH, 40]
    )
    assert not drawn[40, 40] and not drawn[5, 5]


def test_show_helpers_draw_fill_outline_points_and_box():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visa_lib.viz import NEGATIVE, POSITIVE, hex_colour, show_box, show_image, show_mask, show_points

    frame = np.zeros((40, 50, 3), np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:30, 5:25] = True
    fig, ax = plt.subplots()
    show_image(frame, ax, title="t")
    show_mask(mask, ax, index=1)
    show_points(np.array([[3, 4], [10, 12]]), np.array([1, 0]), ax)
    show_box((5, 10, 25, 30), ax, index=2)
    fill = ax.images[1].get_array()
    assert fill.shape == (40, 50, 4)
    assert np.allclose(fill[15, 10, :3], colour(1) / 255) and fill[15, 10, 3] > 0 and fill[0, 0, 3] == 0
    assert len(ax.collections) == 3  # the outline contour and the two point sets
    faces = [matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections[1:]]
    assert faces == [POSITIVE.lower(), NEGATIVE.lower()]
    box = ax.patches[0]
    assert box.get_width() == 20 and matplotlib.colors.to_hex(box.get_edgecolor()) == hex_colour(2)
    assert ax.get_title() == "t" and not ax.get_xticks().size
    plt.close(fig)
