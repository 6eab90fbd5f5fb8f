"""Visualizer: exact colours at known pixels, labels inside their regions, the RankSeg panel, stable colours
across frames."""

import numpy as np
import pytest
import torch

from mask2former_rankseg.data.catalog import Metadata
from mask2former_rankseg.structures import Instances
from mask2former_rankseg.utils import visualizer as vis_module
from mask2former_rankseg.utils.visualizer import (
    ClassPalette,
    InstanceTracker,
    Visualizer,
    clip_present_classes,
    draw_clip_frame,
    draw_predictions,
    generated_colors,
    instance_color,
    rankseg_panel_width,
)

GREY = 100
COLORS = [(200, 0, 50), (0, 120, 240), (60, 60, 60), (250, 250, 0)]
NAMES = ["wall, partition", "sky", "person", "car"]


def _palette():
    return ClassPalette(NAMES, COLORS, thing_ids=[2, 3])


def _grey(height=40, width=60):
    return np.full((height, width, 3), GREY, dtype=np.uint8)


def _blend(color, alpha=0.5, base=GREY):
    return np.round((1 - alpha) * base + alpha * np.asarray(color, dtype=np.float64)).astype(np.uint8)


def test_semantic_map_colours_known_pixels_and_leaves_ignore_undrawn():
    labels = np.full((40, 60), 255, dtype=np.int64)
    labels[:, :30] = 0
    labels[20:, 30:] = 1
    out = Visualizer(_grey(), _palette()).draw_sem_seg(labels).get_image()
    assert out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out[1, 1], [150, 50, 75])        # (100 + 200) / 2, (100 + 0) / 2, (100 + 50) / 2
    np.testing.assert_array_equal(out[38, 58], [50, 110, 170])
    np.testing.assert_array_equal(out[2, 58], [GREY] * 3)          # ignore label: the image itself
    np.testing.assert_array_equal(_blend(COLORS[0], alpha=0.25)[None], (
        Visualizer(_grey(), _palette(), alpha=0.25).draw_sem_seg(labels).get_image()[1:2, 1]))


def test_region_labels_are_drawn_inside_each_region_centre():
    labels = np.zeros((64, 96), dtype=np.int64)
    labels[:, 48:] = 1
    vis = Visualizer(_grey(64, 96), _palette()).draw_sem_seg(labels)
    points = {text: xy for text, xy in vis._labels}
    assert set(points) == {"wall", "sky"}                           # first synonym of "wall, partition"
    assert abs(points["wall"][0] - 24) <= 1 and abs(points["wall"][1] - 32) <= 1
    assert abs(points["sky"][0] - 72) <= 1
    out = vis.get_image()
    assert (out[24:40, 4:44] > 200).all(axis=-1).any()             # white glyphs near the centre...
    assert not (out[1:6, 1:6] > 200).all(axis=-1).any()            # ...not in the corner


def test_label_of_a_non_convex_region_lies_inside_it():
    mask = np.zeros((50, 50), dtype=bool)
    mask[:, :10] = True                                           # an L: its centroid lies outside it
    mask[40:, :] = True
    points = vis_module._deepest_points(mask, min_area=16, largest_only=False)
    assert len(points) == 1
    x, y = points[0]
    assert mask[y, x]
    centroid_y, centroid_x = np.argwhere(mask).mean(0).round().astype(int)
    assert not mask[centroid_y, centroid_x]


def test_small_regions_get_no_label():
    labels = np.zeros((100, 100), dtype=np.int64)
    labels[:3, :3] = 1                                            # 9 px < 16
    vis = Visualizer(_grey(100, 100), _palette()).draw_sem_seg(labels)
    assert [text for text, _ in vis._labels] == ["wall"]
    assert vis.drawn_classes == {0, 1}


def test_instances_masks_colours_outline_and_score_label():
    masks = np.zeros((2, 40, 60), dtype=bool)
    masks[0, 5:30, 5:30] = True
    masks[1, 10:35, 35:55] = True
    vis = Visualizer(_grey(), _palette()).draw_instances(masks, [2, 2], [0.9, 0.625])
    out = vis.get_image()
    first, second = instance_color(COLORS[2], 0), instance_color(COLORS[2], 1)
    assert not np.array_equal(first, second)                      # two persons, two colours
    np.testing.assert_array_equal(out[7, 7], _blend(first))
    np.testing.assert_array_equal(out[12, 37], _blend(second))
    outline = (first.astype(np.float64) * 0.6).astype(np.uint8)
    np.testing.assert_array_equal(out[5, 15], outline)            # contour on the mask border
    np.testing.assert_array_equal(out[2, 2], [GREY] * 3)
    assert sorted(text for text, _ in vis._labels) == ["person 62%", "person 90%"]
    identities = Visualizer(_grey(), _palette()).draw_instances(masks, [2, 2], identities=[7, 7]).get_image()
    np.testing.assert_array_equal(identities[7, 7], _blend(instance_color(COLORS[2], 7)))
    np.testing.assert_array_equal(identities[12, 37], identities[7, 7])


def test_instance_colour_is_a_fixed_shift_of_the_class_colour():
    a = instance_color(np.array([100, 100, 100]), 3)
    np.testing.assert_array_equal(a, instance_color(np.array([100, 100, 100]), 3))
    assert np.abs(a.astype(int) - 100).max() <= vis_module.INSTANCE_JITTER


def test_panoptic_stuff_in_class_colour_things_in_instance_colours_void_undrawn():
    id_map = np.zeros((40, 60), dtype=np.int32)
    id_map[:20] = 1                                               # sky (stuff)
    id_map[25:, 5:25] = 2                                         # person (thing)
    id_map[25:, 30:50] = 3                                        # car (thing)
    segments = [{"id": 1, "category_id": 1, "isthing": False}, {"id": 2, "category_id": 2, "isthing": True},
                {"id": 3, "category_id": 3, "isthing": True}]
    vis = Visualizer(_grey(), _palette()).draw_panoptic_seg(id_map, segments)
    out = vis.get_image()
    np.testing.assert_array_equal(out[1, 1], _blend(COLORS[1]))
    np.testing.assert_array_equal(out[27, 7], _blend(instance_color(COLORS[2], 2)))
    np.testing.assert_array_equal(out[27, 32], _blend(instance_color(COLORS[3], 3)))
    np.testing.assert_array_equal(out[22, 57], [GREY] * 3)
    assert sorted(text for text, _ in vis._labels) == ["car", "person", "sky"]
    assert vis.drawn_classes == {1, 2, 3}
    tracked = Visualizer(_grey(), _palette()).draw_panoptic_seg(id_map, segments, {1: 1, 2: 9, 3: 4}).get_image()
    np.testing.assert_array_equal(tracked[27, 7], _blend(instance_color(COLORS[2], 9)))


def _panel_row_pixels(image, image_width, row_index, height):
    """(dot centre, swatch centre) pixel values of panel row ``row_index``."""
    scale = vis_module.text_scale(height, image_width)
    row = max(12, int(round(vis_module.ROW_HEIGHT * scale)))
    pad = max(2, row // 6)
    top = row * (row_index + 1)
    dot = image[top + row // 2, image_width + pad + row // 4]
    swatch_left = pad + row // 2 + pad
    swatch = image[top + row // 2, image_width + swatch_left + (row - 2 * pad) // 2]
    return dot, swatch


def test_rankseg_panel_lists_topk_in_rank_order_and_marks_present_classes():
    height, width = 240, 320
    labels = np.zeros((height, width), dtype=np.int64)
    labels[:, 160:] = 3
    multilabel = {"scores": torch.tensor([2.0, -1.0, 0.5, 1.0]), "topk": torch.tensor([0, 3, 2])}
    out = Visualizer(_grey(height, width), _palette()).draw_sem_seg(labels).draw_rankseg_panel(multilabel).get_image()
    assert out.shape == (height, width + rankseg_panel_width(height, width), 3)
    assert rankseg_panel_width(height, width) % 2 == 0
    for rank, (class_id, present) in enumerate([(0, True), (3, True), (2, False)]):
        dot, swatch = _panel_row_pixels(out, width, rank, height)
        np.testing.assert_array_equal(swatch, COLORS[class_id])
        np.testing.assert_array_equal(dot, vis_module.PRESENT_MARK if present else vis_module.PANEL_BACKGROUND)
    # explicit ``present`` wins over what was drawn
    out = Visualizer(_grey(height, width), _palette()).draw_rankseg_panel(multilabel, present={2}).get_image()
    assert tuple(_panel_row_pixels(out, width, 2, height)[0]) == vis_module.PRESENT_MARK
    assert tuple(_panel_row_pixels(out, width, 0, height)[0]) == vis_module.PANEL_BACKGROUND


def test_panel_shows_the_rows_that_fit_in_a_short_image():
    multilabel = {"scores": torch.zeros(4), "topk": torch.tensor([0, 1, 2, 3])}
    out = Visualizer(_grey(30, 60), _palette()).draw_rankseg_panel(multilabel).get_image()
    assert out.shape == (30, 60 + rankseg_panel_width(30, 60), 3)
    assert rankseg_panel_width(30, 60) < rankseg_panel_width(480, 640)


def test_size_mismatch_and_bad_image_are_refused():
    with pytest.raises(ValueError, match=r"label map is \(10, 10\) but the image is \(40, 60\)"):
        Visualizer(_grey(), _palette()).draw_sem_seg(np.zeros((10, 10), dtype=np.int64))
    with pytest.raises(ValueError, match="RGB uint8"):
        Visualizer(np.zeros((4, 4), dtype=np.uint8), _palette())


def test_palette_from_metadata_panoptic_instance_and_missing():
    panoptic = Metadata("pan").set(stuff_classes=["a", "b", "c"], stuff_colors=[[1, 2, 3], [4, 5, 6], [7, 8, 9]],
                                   thing_classes=["b"], thing_colors=[[4, 5, 6]],
                                   thing_dataset_id_to_contiguous_id={12: 1})
    p = ClassPalette.from_metadata(panoptic, 3)
    assert p.names == ["a", "b", "c"] and p.thing_ids == {1}
    np.testing.assert_array_equal(p.color(2), [7, 8, 9])
    instance = Metadata("ins").set(thing_classes=["cat", "dog"], thing_colors=[[9, 9, 9], [8, 8, 8]],
                                   thing_dataset_id_to_contiguous_id={5: 0, 7: 1})
    p = ClassPalette.from_metadata(instance, 2)
    assert p.names == ["cat", "dog"] and p.thing_ids == {0, 1}
    p = ClassPalette.from_metadata(None, 3)
    assert p.names == ["class 0", "class 1", "class 2"]
    np.testing.assert_array_equal(p.colors, generated_colors(3))
    short = ClassPalette.from_metadata(Metadata("short").set(stuff_classes=["x"], stuff_colors=[[1, 1, 1]]), 2)
    assert short.names == ["x", "class 1"]
    np.testing.assert_array_equal(short.color(1), generated_colors(2)[1])


def test_generated_colours_are_distinct_and_deterministic():
    colors = generated_colors(300)
    assert len({tuple(c) for c in colors}) == 300
    np.testing.assert_array_equal(colors[:10], generated_colors(10))


def test_tracker_keeps_identities_of_moving_instances():
    tracker = InstanceTracker()
    frame0 = np.zeros((2, 40, 60), dtype=bool)
    frame0[0, 5:20, 5:20] = True
    frame0[1, 20:35, 30:50] = True
    assert tracker.assign(frame0, [2, 3]) == [0, 1]
    frame1 = np.zeros((3, 40, 60), dtype=bool)
    frame1[0, 21:36, 31:51] = True      # the car, moved by one pixel, now listed first
    frame1[1, 6:21, 6:21] = True        # the person
    frame1[2, 0:5, 50:60] = True        # a new person
    assert tracker.assign(frame1, [3, 2, 2]) == [1, 0, 2]
    frame2 = frame1[:1].copy()
    assert tracker.assign(frame2, [2]) == [3]  # same place as the car, but another class: a new identity


def test_frame_by_frame_video_keeps_instance_colours():
    palette = _palette()
    tracker = InstanceTracker()

    def frame(offset, scores):
        masks = torch.zeros(2, 80, 120)
        masks[0, 10 + offset:40 + offset, 10:40] = 1
        masks[1, 45:75, 60 + offset:100 + offset] = 1
        return {"instances": Instances((80, 120), pred_masks=masks, scores=torch.tensor(scores),
                                       pred_classes=torch.tensor([2, 2]))}

    # the two persons move by a pixel and swap their score order (the drawing order)
    first = draw_predictions(_grey(80, 120), frame(0, [0.9, 0.8]), palette, tracker=tracker)
    second = draw_predictions(_grey(80, 120), frame(1, [0.8, 0.9]), palette, tracker=tracker)
    np.testing.assert_array_equal(first[13, 13], _blend(instance_color(COLORS[2], 0)))
    np.testing.assert_array_equal(second[13, 13], first[13, 13])
    np.testing.assert_array_equal(second[48, 64], first[48, 64])
    assert not np.array_equal(first[13, 13], first[48, 64])
    untracked = draw_predictions(_grey(80, 120), frame(1, [0.8, 0.9]), palette)
    assert not np.array_equal(untracked[13, 13], first[13, 13])   # without a tracker the score order decides


def test_draw_predictions_applies_the_confidence_threshold_and_prefers_panoptic():
    masks = torch.zeros(2, 40, 60)
    masks[0, :10, :10] = 1
    masks[1, 20:, 20:] = 1
    preds = {"instances": Instances((40, 60), pred_masks=masks, scores=torch.tensor([0.9, 0.3]),
                                    pred_classes=torch.tensor([2, 3]))}
    out = draw_predictions(_grey(), preds, _palette(), confidence_threshold=0.5)
    assert not np.array_equal(out[2, 2], [GREY] * 3)
    np.testing.assert_array_equal(out[30, 30], [GREY] * 3)
    id_map = torch.zeros(40, 60, dtype=torch.int32)
    id_map[:, 30:] = 1
    preds["panoptic_seg"] = (id_map, [{"id": 1, "category_id": 1, "isthing": False}])
    out = draw_predictions(_grey(), preds, _palette())
    np.testing.assert_array_equal(out[2, 2], [GREY] * 3)          # instances are not drawn over panoptic
    np.testing.assert_array_equal(out[2, 40], _blend(COLORS[1]))


def _clip_output(num_frames=3):
    masks = torch.zeros(2, num_frames, 80, 120, dtype=torch.bool)
    for t in range(num_frames):
        masks[0, t, 10:40, 10 + t:40 + t] = True
        masks[1, t, 50:76, 60:100] = t != 1                       # track 1 is hidden in frame 1
    return {"image_size": (80, 120), "pred_scores": [0.9, 0.7], "pred_labels": [2, 3], "pred_masks": list(masks),
            "multilabel": {"scores": torch.tensor([0.0, -2.0, 3.0, 1.0]), "topk": torch.tensor([2, 3])}}


def test_clip_frames_keep_track_colours_and_mark_clip_classes():
    clip = _clip_output()
    frames = [draw_clip_frame(_grey(80, 120), clip, t, _palette()) for t in range(3)]
    np.testing.assert_array_equal(frames[0][13, 14], _blend(instance_color(COLORS[2], 0)))
    np.testing.assert_array_equal(frames[2][13, 14], frames[0][13, 14])
    np.testing.assert_array_equal(frames[2][53, 63], _blend(instance_color(COLORS[3], 1)))
    np.testing.assert_array_equal(frames[1][53, 63], [GREY] * 3)
    assert clip_present_classes(clip, 0.5) == {2, 3}
    assert clip_present_classes(clip, 0.8) == {2}
    assert frames[1].shape == (80, 120 + rankseg_panel_width(80, 120), 3)
    # car (rank 2) is in the clip, so it is marked even in frame 1, where it is hidden
    assert tuple(_panel_row_pixels(frames[1], 120, 1, 80)[0]) == vis_module.PRESENT_MARK


def test_clip_semantic_labels_are_drawn_per_frame():
    labels = torch.zeros(2, 40, 60, dtype=torch.int64)
    labels[1] = 1
    clip = {"image_size": (40, 60), "pred_scores": [], "pred_labels": [], "pred_masks": [],
            "sem_seg_labels": labels}
    np.testing.assert_array_equal(draw_clip_frame(_grey(), clip, 0, _palette())[1, 1], _blend(COLORS[0]))
    np.testing.assert_array_equal(draw_clip_frame(_grey(), clip, 1, _palette())[1, 1], _blend(COLORS[1]))


def test_panoptic_things_keep_colours_when_segment_ids_change():
    tracker = InstanceTracker()

    def frame(person_id, car_id):
        id_map = torch.zeros(80, 120, dtype=torch.int32)
        id_map[:, 100:] = 5                                       # sky
        id_map[10:40, 10:40] = person_id
        id_map[45:75, 50:90] = car_id
        return {"panoptic_seg": (id_map, [{"id": 5, "category_id": 1, "isthing": False},
                                          {"id": person_id, "category_id": 2, "isthing": True},
                                          {"id": car_id, "category_id": 3, "isthing": True}])}

    first = draw_predictions(_grey(80, 120), frame(1, 2), _palette(), tracker=tracker)
    second = draw_predictions(_grey(80, 120), frame(2, 1), _palette(), tracker=tracker)  # ids swapped
    for y, x in [(13, 13), (48, 53), (3, 110)]:
        np.testing.assert_array_equal(first[y, x], second[y, x])


def test_summary_line():
    scores = torch.zeros(3, 2, 2)
    scores[1, 0] = 1.0
    instances = Instances((2, 2), pred_masks=torch.ones(2, 2, 2), scores=torch.tensor([0.9, 0.1]),
                          pred_classes=torch.tensor([0, 1]))
    assert vis_module.summarize({"sem_seg": scores, "instances": instances}, 0.5) == "2 classes, 1 instance"
    assert vis_module.summarize({"sem_seg": torch.zeros(3, 2, 2)}, 0.5) == "1 class"
