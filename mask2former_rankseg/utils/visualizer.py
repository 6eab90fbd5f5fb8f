"""Drawing predictions (numpy + OpenCV, no detectron2): semantic maps, panoptic segments, instances, and the
RankSeg panel that lists the top-ranked categories of the image with their image-level scores.

Images are RGB uint8 [H, W, 3] throughout. Region fills blend the class colour into the image,
``out = round((1 - alpha) * pixel + alpha * colour)``; labels are written at the pixel of each region that lies
deepest inside it. Colours depend only on the class (semantic maps, stuff) or on the class and an instance
*identity* (things, instances): give the same identity in consecutive frames
(:class:`~mask2former_rankseg.utils.video_tracks.InstanceTracker` for frame-by-frame models, the track id for clip
models) and a video keeps its colours.
"""

from __future__ import annotations

import colorsys
import logging
from typing import Any, List, Mapping, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from ..constants import IGNORE_LABEL
from .predictions import clip_tracks, confident_instances, image_scores, semantic_labels, to_numpy
from .video_tracks import InstanceTracker

__all__ = [
    "ClassPalette",
    "InstanceTracker",
    "Visualizer",
    "clip_present_classes",
    "draw_clip_frame",
    "draw_predictions",
    "generated_colors",
    "instance_color",
    "rankseg_panel_width",
    "summarize",
    "text_scale",
]

logger = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.5
"""Weight of the class colour in region fills."""
PANEL_ROWS = 10
"""Categories listed in the RankSeg panel (fewer when the image is too short for them)."""
PANEL_WIDTH = 280
"""RankSeg panel width in pixels at text scale 1 (see :func:`rankseg_panel_width`)."""
PANEL_MIN_WIDTH = 180
"""The panel is never narrower than this (category names of small images stay readable)."""
ROW_HEIGHT = 26
"""Height of one panel row (and the header) in pixels at text scale 1."""
INSTANCE_JITTER = 60.0
"""Largest per-channel change (0..255) of an instance's colour from its class colour."""
MIN_LABEL_AREA_FRACTION = 0.002
"""Regions smaller than this fraction of the image (or 16 px) get no label."""
FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_FONT, PANEL_FONT, MIN_FONT = 0.5, 0.55, 0.35
"""OpenCV font scales of region labels and panel text at text scale 1, and the smallest one used."""
PANEL_BACKGROUND = (30, 30, 30)
PRESENT_MARK = (80, 220, 80)
ABSENT_TEXT = (140, 140, 140)


# --------------------------------------------------------------------------------------------------
# classes and colours
# --------------------------------------------------------------------------------------------------
def generated_colors(num_classes: int) -> np.ndarray:
    """[K, 3] uint8 RGB colours for classes without metadata: hues spaced by the golden ratio (distinct,
    deterministic)."""
    colors = []
    for k in range(num_classes):
        hue = (k * 0.618033988749895) % 1.0
        saturation = (0.85, 0.6, 0.95)[k % 3]
        value = (0.95, 0.75, 0.85)[(k // 3) % 3]
        colors.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value)])
    return np.asarray(colors, dtype=np.uint8).reshape(num_classes, 3)


class ClassPalette:
    """Names, colours and thing/stuff kind of the model's K contiguous classes.

    Args:
        names: K class names.
        colors: [K, 3] RGB colours (0..255).
        thing_ids: contiguous ids of the "thing" (countable) classes.
    """

    def __init__(self, names: Sequence[str], colors: Any, thing_ids: Sequence[int] = ()):
        self.names = [str(n) for n in names]
        self.colors = np.asarray(colors, dtype=np.int64).reshape(-1, 3).clip(0, 255).astype(np.uint8)
        if len(self.colors) != len(self.names):
            raise ValueError(f"ClassPalette: {len(self.names)} names but {len(self.colors)} colours.")
        self.thing_ids = frozenset(int(t) for t in thing_ids)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_metadata(cls, metadata: Any, num_classes: int) -> ClassPalette:
        """The palette of a dataset's metadata (``stuff_classes``/``stuff_colors`` when they list all K classes,
        else ``thing_classes``/``thing_colors``), completed with "class N" names and generated colours where
        the metadata is missing or shorter than K.

        Args:
            metadata: a :class:`~mask2former_rankseg.data.catalog.Metadata` (anything with ``get``), or None.
            num_classes: K, the model's number of classes.
        """
        get = metadata.get if metadata is not None else (lambda key, default=None: default)
        stuff, things = get("stuff_classes") or [], get("thing_classes") or []
        if len(stuff) == num_classes or (len(stuff) >= len(things) and len(things) != num_classes):
            names, colors = list(stuff), list(get("stuff_colors") or [])
            thing_ids = [int(v) for v in (get("thing_dataset_id_to_contiguous_id") or {}).values()] if things else []
        else:  # instance datasets: the model's classes are the thing classes
            names, colors = list(things), list(get("thing_colors") or [])
            thing_ids = list(range(num_classes))
        if len(names) != num_classes:
            dataset = getattr(metadata, "name", None)
            logger.warning("The metadata of %r names %d classes but the model has %d: class k takes the metadata's "
                           "k-th name and colour where there is one, else 'class k' and a generated colour.",
                           dataset, len(names), num_classes)
        fallback = generated_colors(num_classes)
        names = [names[k] if k < len(names) else f"class {k}" for k in range(num_classes)]
        colors = [colors[k] if k < len(colors) else fallback[k] for k in range(num_classes)]
        return cls(names, colors, [t for t in thing_ids if 0 <= t < num_classes])

    def name(self, class_id: int) -> str:
        """The display name of ``class_id``: its first synonym (ADE20K names read "wall, partition, ...")."""
        if not 0 <= class_id < len(self.names):
            return f"class {class_id}"
        return self.names[class_id].split(",")[0].strip()

    def color(self, class_id: int) -> np.ndarray:
        """[3] uint8 RGB colour of ``class_id`` (a generated one outside 0..K-1)."""
        if 0 <= class_id < len(self.colors):
            return self.colors[class_id]
        return generated_colors(class_id + 1)[class_id]

    def is_thing(self, class_id: int) -> bool:
        return class_id in self.thing_ids


def instance_color(class_color: np.ndarray, identity: int) -> np.ndarray:
    """The colour of instance ``identity`` of a class: its class colour shifted by a fixed, identity-seeded
    amount (at most :data:`INSTANCE_JITTER` per channel), so the same identity always gets the same colour."""
    shift = np.random.default_rng(int(identity) + 1).uniform(-INSTANCE_JITTER, INSTANCE_JITTER, 3)
    return (np.asarray(class_color, dtype=np.float64) + shift).round().clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------------
def text_scale(height: int, width: int) -> float:
    """Font scale for an image of this size (1.0 at 480 px on the shorter side, within [0.35, 1.6])."""
    return float(np.clip(min(height, width) / 480.0, 0.35, 1.6))


def rankseg_panel_width(height: int, width: int) -> int:
    """Width in pixels of the RankSeg panel appended to the right of an image of this size (even, so that
    even-sized video frames stay even-sized, as video codecs need)."""
    return 2 * int(round(max(PANEL_MIN_WIDTH, PANEL_WIDTH * text_scale(height, width)) / 2))


def _font_scale(scale: float, relative: float) -> float:
    return max(MIN_FONT, scale * relative)


def _thickness(scale: float) -> int:
    return max(1, int(round(scale * 1.5)))


def _put_text(canvas: np.ndarray, text: str, org: Tuple[int, int], scale: float,
              color: Tuple[int, int, int] = (255, 255, 255), outline: bool = True) -> None:
    """Text with its baseline-left corner at ``org``, with a dark shadow around it for contrast (the same glyphs
    shifted by one pixel: a thicker stroke would change the glyph widths of some OpenCV fonts)."""
    thickness = _thickness(scale)
    if outline:
        x, y = org
        for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
            cv2.putText(canvas, text, (x + dx, y + dy), FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    cv2.putText(canvas, text, org, FONT, scale, tuple(int(c) for c in color), thickness, cv2.LINE_AA)


def _fit_text(text: str, max_width: int, scale: float) -> str:
    """``text`` cut (with "..") to at most ``max_width`` pixels."""
    thickness = _thickness(scale)
    if cv2.getTextSize(text, FONT, scale, thickness)[0][0] <= max_width:
        return text
    while text and cv2.getTextSize(text + "..", FONT, scale, thickness)[0][0] > max_width:
        text = text[:-1]
    return text + ".."


def _deepest_points(mask: np.ndarray, min_area: int, largest_only: bool) -> List[Tuple[int, int]]:
    """(x, y) of the pixel farthest from the border (the middle one where several are) in each connected region
    of ``mask`` [H, W] bool with at least ``min_area`` pixels (only in the largest one with ``largest_only``)."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    regions = [r for r in range(1, count) if stats[r, cv2.CC_STAT_AREA] >= min_area]
    if largest_only and regions:
        regions = [max(regions, key=lambda r: stats[r, cv2.CC_STAT_AREA])]
    points = []
    for r in regions:
        x, y, w, h = (int(stats[r, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                 cv2.CC_STAT_HEIGHT))
        region = np.pad((components[y:y + h, x:x + w] == r).astype(np.uint8), 1)
        distance = cv2.distanceTransform(region, cv2.DIST_L2, 3)
        deepest = np.argwhere(distance >= distance.max() - 0.5)  # the ridge; take its middle
        dy, dx = deepest[np.abs(deepest - deepest.mean(0)).sum(1).argmin()]
        points.append((x + int(dx) - 1, y + int(dy) - 1))
    return points


# --------------------------------------------------------------------------------------------------
# the visualizer
# --------------------------------------------------------------------------------------------------
class Visualizer:
    """Draws predictions onto one image; :meth:`get_image` returns the result.

    Args:
        image: RGB uint8 [H, W, 3].
        palette: names and colours of the model's classes.
        alpha: weight of the class colour in region fills.
    Attributes:
        drawn_classes: class ids of everything drawn so far (what the RankSeg panel marks as present).
    """

    def __init__(self, image: np.ndarray, palette: ClassPalette, alpha: float = DEFAULT_ALPHA):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Visualizer takes an RGB uint8 [H, W, 3] image, got {image.shape} {image.dtype}.")
        self.canvas = np.ascontiguousarray(image).copy()
        self.palette = palette
        self.alpha = float(alpha)
        height, width = image.shape[:2]
        self.scale = text_scale(height, width)
        self.min_label_area = max(16, int(MIN_LABEL_AREA_FRACTION * height * width))
        self.drawn_classes: Set[int] = set()
        self._labels: List[Tuple[str, Tuple[int, int]]] = []
        self._panel: Optional[Tuple[Mapping[str, Any], Optional[Set[int]], int]] = None

    # regions -----------------------------------------------------------------------------------
    def _fill(self, mask: np.ndarray, color: np.ndarray) -> None:
        pixels = self.canvas[mask].astype(np.float64)
        self.canvas[mask] = ((1.0 - self.alpha) * pixels + self.alpha * color.astype(np.float64)).round().astype(
            np.uint8)

    def _outline(self, mask: np.ndarray, color: np.ndarray) -> None:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        darker = tuple(int(c) for c in (color.astype(np.float64) * 0.6))
        cv2.drawContours(self.canvas, contours, -1, darker, max(1, int(round(self.scale))), cv2.LINE_8)

    def _label(self, mask: np.ndarray, text: str, largest_only: bool) -> None:
        for point in _deepest_points(mask, self.min_label_area, largest_only):
            self._labels.append((text, point))

    def draw_sem_seg(self, labels: np.ndarray, ignore_label: int = IGNORE_LABEL) -> Visualizer:
        """A label map [H, W] (contiguous class ids; ``ignore_label`` is left undrawn): class colours, and each
        class's name at the centre of each of its regions."""
        labels = to_numpy(labels)
        self._check_size(labels.shape, "label map")
        for class_id in np.unique(labels).tolist():
            if class_id == ignore_label:
                continue
            mask = labels == class_id
            self._fill(mask, self.palette.color(class_id))
            self._label(mask, self.palette.name(class_id), largest_only=False)
            self.drawn_classes.add(int(class_id))
        return self

    def draw_panoptic_seg(self, id_map: np.ndarray, segments_info: Sequence[Mapping[str, Any]],
                          identities: Optional[Mapping[int, int]] = None) -> Visualizer:
        """Panoptic segments: ``id_map`` [H, W] segment ids (0 void), ``segments_info`` ``[{id, category_id,
        isthing}]``. Stuff takes its class colour; each thing a colour of its own (from ``identities``, segment
        id -> identity, default the segment id) and an outline. Each stuff region and each thing is labelled
        with its class name."""
        id_map = to_numpy(id_map)
        self._check_size(id_map.shape, "panoptic id map")
        for segment in segments_info:
            mask = id_map == int(segment["id"])
            if not mask.any():
                continue
            class_id = int(segment["category_id"])
            color = self.palette.color(class_id)
            isthing = bool(segment.get("isthing", self.palette.is_thing(class_id)))
            if isthing:
                identity = int(segment["id"]) if identities is None else int(identities[int(segment["id"])])
                color = instance_color(color, identity)
            self._fill(mask, color)
            if isthing:
                self._outline(mask, color)
            self._label(mask, self.palette.name(class_id), largest_only=isthing)
            self.drawn_classes.add(class_id)
        return self

    def draw_instances(self, masks: np.ndarray, classes: Sequence[int], scores: Optional[Sequence[float]] = None,
                       identities: Optional[Sequence[int]] = None) -> Visualizer:
        """Instances: ``masks`` [N, H, W] bool, ``classes`` [N], ``scores`` [N] (shown as percent), and
        ``identities`` [N] for their colours (default 0..N-1). Larger masks are drawn first, so small ones stay
        visible; each is outlined and labelled "name 87%" at its centre."""
        masks = np.asarray(to_numpy(masks), dtype=bool)
        if len(masks):
            self._check_size(masks.shape[1:], "instance masks")
        identities = list(range(len(masks))) if identities is None else list(identities)
        for i in np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable"):
            if not masks[i].any():
                continue
            class_id = int(classes[i])
            color = instance_color(self.palette.color(class_id), identities[i])
            self._fill(masks[i], color)
            self._outline(masks[i], color)
            text = self.palette.name(class_id)
            if scores is not None:
                text = f"{text} {100 * float(scores[i]):.0f}%"
            self._label(masks[i], text, largest_only=True)
            self.drawn_classes.add(class_id)
        return self

    def _check_size(self, shape: Tuple[int, ...], what: str) -> None:
        if tuple(shape) != self.canvas.shape[:2]:
            raise ValueError(f"The {what} is {tuple(shape)} but the image is {self.canvas.shape[:2]}.")

    # RankSeg panel -----------------------------------------------------------------------------
    def draw_rankseg_panel(self, multilabel: Mapping[str, Any], present: Optional[Set[int]] = None,
                           max_rows: int = PANEL_ROWS) -> Visualizer:
        """A panel right of the image listing RankSeg's top-ranked categories, best first: rank, colour, name
        and image-level score (sigmoid of the multi-label logit). Categories in the final segmentation
        (``present``, default :attr:`drawn_classes` at the time of :meth:`get_image`) get a green dot and
        white text; the others a hollow grey dot and grey text.

        Args:
            multilabel: the model's ``multilabel`` output, ``{"scores": [K] logits, "topk": [k] class ids}``.
        """
        self._panel = (multilabel, present, max_rows)
        return self

    def _render_panel(self) -> np.ndarray:
        multilabel, present, max_rows = self._panel
        present = self.drawn_classes if present is None else present
        height, width = self.canvas.shape[:2]
        scale = _font_scale(self.scale, PANEL_FONT)
        row = max(12, int(round(ROW_HEIGHT * self.scale)))
        panel = np.full((height, rankseg_panel_width(height, width), 3), PANEL_BACKGROUND, dtype=np.uint8)
        topk = [int(c) for c in to_numpy(multilabel["topk"]).reshape(-1)]
        scores = image_scores(multilabel)
        pad = max(2, row // 6)
        _put_text(panel, _fit_text(f"RankSeg top-{len(topk)}", panel.shape[1] - 2 * pad, scale),
                  (pad, row - 2 * pad), scale, outline=False)
        for rank, class_id in enumerate(topk[:max_rows]):
            top = row * (rank + 1)
            if top + row > height:
                break
            self._render_panel_row(panel, top, row, pad, scale, rank, class_id, float(scores[class_id]),
                                   class_id in present)
        return panel

    def _render_panel_row(self, panel: np.ndarray, top: int, row: int, pad: int, scale: float, rank: int,
                          class_id: int, score: float, is_present: bool) -> None:
        centre = (pad + row // 4, top + row // 2)
        radius = max(2, row // 4)
        if is_present:
            cv2.circle(panel, centre, radius, PRESENT_MARK, -1, cv2.LINE_AA)
        else:
            cv2.circle(panel, centre, radius, ABSENT_TEXT, 1, cv2.LINE_AA)
        swatch_left = pad + row // 2 + pad
        swatch = (swatch_left, top + pad, swatch_left + row - 2 * pad, top + row - pad)
        cv2.rectangle(panel, swatch[:2], swatch[2:], tuple(int(c) for c in self.palette.color(class_id)), -1)
        text_color = (255, 255, 255) if is_present else ABSENT_TEXT
        baseline = top + row - 2 * pad
        score_text = f"{score:.2f}"
        score_width = cv2.getTextSize(score_text, FONT, scale, _thickness(scale))[0][0]
        _put_text(panel, score_text, (panel.shape[1] - pad - score_width, baseline), scale, text_color, outline=False)
        name_left = swatch[2] + pad
        name = _fit_text(f"{rank + 1}. {self.palette.name(class_id)}", panel.shape[1] - 3 * pad - score_width
                         - name_left, scale)
        _put_text(panel, name, (name_left, baseline), scale, text_color, outline=False)

    # output ------------------------------------------------------------------------------------
    def get_image(self) -> np.ndarray:
        """RGB uint8 [H, W, 3] (or [H, W + panel, 3] with the RankSeg panel): fills, labels on top."""
        image = self.canvas.copy()
        font = _font_scale(self.scale, LABEL_FONT)
        for text, (x, y) in self._labels:
            (w, h), _ = cv2.getTextSize(text, FONT, font, _thickness(font))
            left = int(np.clip(x - w // 2, 0, max(0, image.shape[1] - w)))
            baseline = int(np.clip(y + h // 2, h, image.shape[0] - 1))
            _put_text(image, text, (left, baseline), font)
        if self._panel is not None:
            image = np.concatenate([image, self._render_panel()], axis=1)
        return image


# --------------------------------------------------------------------------------------------------
# whole outputs
# --------------------------------------------------------------------------------------------------
def draw_predictions(image: np.ndarray, predictions: Mapping[str, Any], palette: ClassPalette, *,
                     confidence_threshold: float = 0.5, tracker: Optional[InstanceTracker] = None,
                     alpha: float = DEFAULT_ALPHA, ranking_panel: bool = True) -> np.ndarray:
    """Draw an image model's output dict on ``image`` (RGB uint8 [H, W, 3]), as upstream's demo chooses:
    the panoptic segmentation when there is one, else the semantic map and the instances with score >=
    ``confidence_threshold``; then the RankSeg panel when the model has a multi-label head.

    Args:
        tracker: for video frames: keeps the colours of things/instances from frame to frame.
        ranking_panel: append the RankSeg panel when there is a ``multilabel`` output (False: the overlay keeps
            the image's size).
    Returns:
        RGB uint8 [H, W(+panel), 3].
    """
    vis = Visualizer(image, palette, alpha)
    if "panoptic_seg" in predictions:
        id_map, segments_info = predictions["panoptic_seg"]
        id_map = to_numpy(id_map)
        identities = None
        if tracker is not None:
            things = [s for s in segments_info if s["isthing"]]
            ids = tracker.assign(np.stack([id_map == s["id"] for s in things]) if things
                                 else np.zeros((0, *id_map.shape), bool), [s["category_id"] for s in things])
            identities = {int(s["id"]): i for s, i in zip(things, ids)}
            identities.update({int(s["id"]): int(s["id"]) for s in segments_info if not s["isthing"]})
        vis.draw_panoptic_seg(id_map, segments_info, identities)
    else:
        if "sem_seg" in predictions:
            vis.draw_sem_seg(semantic_labels(predictions["sem_seg"]))
        if "instances" in predictions:
            kept = confident_instances(predictions["instances"], confidence_threshold)
            identities = tracker.assign(kept.masks, kept.classes) if tracker is not None else None
            vis.draw_instances(kept.masks, kept.classes, kept.scores, identities)
    if ranking_panel and "multilabel" in predictions:
        vis.draw_rankseg_panel(predictions["multilabel"])
    return vis.get_image()


def clip_present_classes(clip_output: Mapping[str, Any], confidence_threshold: float) -> Set[int]:
    """Classes in a clip model's final segmentation: its labels maps' classes and its confident tracks'."""
    present = {int(clip_output["pred_labels"][i]) for i in clip_tracks(clip_output, confidence_threshold)
               if to_numpy(clip_output["pred_masks"][i]).any()}
    if "sem_seg_labels" in clip_output:
        present |= {int(c) for c in np.unique(to_numpy(clip_output["sem_seg_labels"]))} - {IGNORE_LABEL}
    return present


def draw_clip_frame(frame: np.ndarray, clip_output: Mapping[str, Any], t: int, palette: ClassPalette, *,
                    confidence_threshold: float = 0.5, present: Optional[Set[int]] = None,
                    alpha: float = DEFAULT_ALPHA, ranking_panel: bool = True) -> np.ndarray:
    """Draw frame ``t`` of a clip (video) model's output on ``frame`` (RGB uint8 [H, W, 3]).

    The clip output holds ``pred_scores`` [N], ``pred_labels`` [N], ``pred_masks`` (N bool [T, H, W]), optional
    ``sem_seg_labels`` [T, H, W] and ``multilabel``. Track ``i`` keeps identity ``i`` (so its colour) in every
    frame; the RankSeg panel (``ranking_panel``) marks the classes of the whole clip (``present``, default
    :func:`clip_present_classes`).
    """
    vis = Visualizer(frame, palette, alpha)
    if "sem_seg_labels" in clip_output:
        vis.draw_sem_seg(to_numpy(clip_output["sem_seg_labels"][t]))
    tracks = clip_tracks(clip_output, confidence_threshold)
    if tracks:
        masks = np.stack([to_numpy(clip_output["pred_masks"][i][t]).astype(bool) for i in tracks])
        vis.draw_instances(masks, [int(clip_output["pred_labels"][i]) for i in tracks],
                           [float(clip_output["pred_scores"][i]) for i in tracks], identities=tracks)
    if ranking_panel and "multilabel" in clip_output:
        if present is None:
            present = clip_present_classes(clip_output, confidence_threshold)
        vis.draw_rankseg_panel(clip_output["multilabel"], present)
    return vis.get_image()


def summarize(predictions: Mapping[str, Any], confidence_threshold: float) -> str:
    """What an image model found, in a few words ("3 segments", "7 classes, 5 instances")."""
    def count(n: int, what: str) -> str:
        return f"{n} {what}" + ("" if n == 1 else "es" if what.endswith("s") else "s")

    parts: List[str] = []
    if "panoptic_seg" in predictions:
        parts.append(count(len(predictions["panoptic_seg"][1]), "segment"))
    elif "sem_seg" in predictions:
        parts.append(count(len(np.unique(semantic_labels(predictions["sem_seg"]))), "class"))
    if "instances" in predictions and "panoptic_seg" not in predictions:
        parts.append(count(len(confident_instances(predictions["instances"], confidence_threshold)), "instance"))
    return ", ".join(parts) or "nothing"
