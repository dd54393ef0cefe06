"""Tessera shapes, what each export format should turn them into, and how to compare.

check_export.py reads an export back through several consumers (datumaro, pycocotools, our own
parsers of the Ultralytics / LabelMe / CSV layouts). Every reader produces `Item`s in pixel
coordinates; this module says which `Item`s each Tessera shape must come back as in each
format ("view"), and lists the differences between what was expected and what came back.

Coordinates are Tessera's: continuous pixels, origin at the top-left corner, 0-based.
A rotated rectangle is its unrotated box's corners plus a clockwise angle in degrees about the
box centre (clockwise on screen, with y pointing down — the convention of CVAT and datumaro).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TOLERANCE = 0.5  # pixels, for every coordinate; degrees, for angles

TESSERA_KINDS = ("rectangle", "polygon", "polyline", "rotated_rectangle", "points", "tag")

# Item kinds, i.e. what a consumer can hand back.
BBOX, ROTATED, POLYGON, POLYLINE, POINTS, LABEL = (
    "bbox", "rotated_bbox", "polygon", "polyline", "points", "label")

Point = tuple[float, float]


@dataclass
class Item:
    """One annotation as a consumer sees it, in pixels.

    bbox and rotated_bbox: points are the two opposite corners (top-left, bottom-right) of the
    (unrotated) box; rotated_bbox also has `angle`. label (an image-level tag): no points.
    """

    label: str
    kind: str
    points: list[Point]
    angle: float | None = None
    # Expected items only:
    cyclic: bool = False      # any starting vertex and either direction is the same shape
    optional: bool = False    # fine if absent
    origin: str = ""          # the Tessera shape kind it comes from


@dataclass
class ImageRead:
    """What a reader found for one image: its size (None when the reader cannot tell)."""

    width: int | None = None
    height: int | None = None
    items: list[Item] = field(default_factory=list)


@dataclass
class Reading:
    """An export as one reader saw it."""

    source: str                                   # e.g. "datumaro coco", "own ultralytics parser"
    images: dict[str, ImageRead] = field(default_factory=dict)   # by image file stem
    problems: list[str] = field(default_factory=list)           # structural errors, one line each
    notes: list[str] = field(default_factory=list)              # worth printing, not failures
    keypoints: dict[str, list[str]] | None = None  # keypoint names per label, if the format has them


def rotated_corners(p1: Point, p2: Point, angle: float) -> list[Point]:
    """The 4 corners of box p1-p2 turned clockwise by `angle` degrees about its centre."""
    (x1, y1), (x2, y2) = p1, p2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    return [(cx + c * (x - cx) - s * (y - cy), cy + s * (x - cx) + c * (y - cy)) for x, y in corners]


def extent(points: list[Point]) -> list[Point]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [(min(xs), min(ys)), (max(xs), max(ys))]


def box_corners(p1: Point, p2: Point) -> list[Point]:
    (x1, y1), (x2, y2) = p1, p2
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


# What each Tessera kind becomes in each view. A view is one way of reading an export;
# several formats share one (yolo and yolo-darknet both read as "detect"). Points in the "pose"
# view assume their label names as many keypoints as the set has (else the exporter drops them).
def expected_items(view: str, shape: dict) -> list[Item]:
    kind, label = shape["kind"], shape["label"]
    pts = [(float(x), float(y)) for x, y in shape.get("points", [])]
    angle = float(shape.get("angle") or 0.0)

    def item(k, points, **kw):
        return Item(label, k, points, origin=kind, **kw)

    rotated = rotated_corners(pts[0], pts[1], angle) if kind == "rotated_rectangle" else None

    if view == "coco":
        # Every COCO object has a bbox; a polygon travels as its segmentation with bbox = extent.
        if kind == "rectangle":
            return [item(BBOX, pts)]
        if kind == "polygon":
            return [item(POLYGON, pts), item(BBOX, extent(pts))]
        if kind == "rotated_rectangle":
            return [item(POLYGON, rotated, cyclic=True), item(BBOX, extent(rotated))]
        if kind == "points":
            return [item(POINTS, pts), item(BBOX, extent(pts), optional=True)]
        return []  # polyline, tag: COCO has no place for them
    if view in ("voc", "detect"):
        if kind == "rectangle":
            return [item(BBOX, pts)]
        if kind in ("polygon", "polyline"):
            return [item(BBOX, extent(pts))]
        if kind == "rotated_rectangle":
            return [item(BBOX, extent(rotated))]
        if kind == "tag" and view == "voc":
            return [item(LABEL, [], optional=True)]
        return []
    if view == "segment":
        if kind == "rectangle":
            return [item(POLYGON, box_corners(*pts), cyclic=True)]
        if kind == "polygon":
            return [item(POLYGON, pts)]
        if kind == "rotated_rectangle":
            return [item(POLYGON, rotated, cyclic=True)]
        return []
    if view == "pose":
        # A pose dataset's objects are keypoint sets (box + keypoints); Tessera leaves boxes
        # and outlines out of it (they belong in detect/segment exports) and reports them.
        if kind == "points":
            return [item(POINTS, pts)]
        return []
    if view == "cvat" or view == "csv":
        mapping = {"rectangle": BBOX, "polygon": POLYGON, "polyline": POLYLINE,
                   "points": POINTS, "tag": LABEL}
        if kind == "rotated_rectangle":
            return [item(ROTATED, pts, angle=angle)]
        return [item(mapping[kind], pts)]
    if view == "labelme":
        if kind == "rotated_rectangle":
            return [item(POLYGON, rotated, cyclic=True)]
        mapping = {"rectangle": BBOX, "polygon": POLYGON, "polyline": POLYLINE,
                   "points": POINTS, "tag": LABEL}
        return [item(mapping[kind], pts)]
    raise ValueError(f"unknown view {view!r}")


def _variants(points: list[Point], cyclic: bool):
    yield points
    if cyclic and points:
        for seq in (points, points[::-1]):
            for i in range(len(seq)):
                yield seq[i:] + seq[:i]


def _distance(expected: Item, got: Item) -> float:
    """Largest coordinate (or angle) difference over the best vertex alignment; inf if unlike."""
    if expected.label != got.label or expected.kind != got.kind:
        return math.inf
    if len(expected.points) != len(got.points):
        return math.inf
    best = math.inf
    for variant in _variants(got.points, expected.cyclic):
        d = max((max(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in zip(expected.points, variant)),
                default=0.0)
        best = min(best, d)
    if expected.angle is not None or got.angle is not None:
        turn = abs((expected.angle or 0.0) - (got.angle or 0.0)) % 360.0
        best = max(best, min(turn, 360.0 - turn))
    return best


def fmt_points(points: list[Point]) -> str:
    return "[" + ", ".join(f"[{x:.2f}, {y:.2f}]" for x, y in points) + "]"


def describe(item: Item) -> str:
    text = fmt_points(item.points)
    if item.angle is not None:
        text += f" angle {item.angle:.2f}"
    return text


def compare(image: str, expected: list[Item], got: list[Item], source: str) -> list[str]:
    """Differences between the expected and the read items of one image, one line each."""
    diffs: list[str] = []
    unused = list(got)
    misses: list[Item] = []
    for e in expected:
        match = next((g for g in unused if _distance(e, g) <= TOLERANCE), None)
        if match is not None:
            unused.remove(match)
        elif not e.optional:
            misses.append(e)
    for e in misses:
        # Pair the miss with the nearest read item of the same label and kind, if any.
        candidates = [g for g in unused if g.label == e.label and g.kind == e.kind]
        what = f"{image}: {e.label} {e.kind}" + (f" (from {e.origin})" if e.origin != e.kind else "")
        if candidates:
            near = min(candidates, key=lambda g: (_distance(e, g), abs(len(g.points) - len(e.points))))
            unused.remove(near)
            diffs.append(f"{source}: {what}: expected {describe(e)} got {describe(near)}")
        else:
            diffs.append(f"{source}: {what}: expected {describe(e)} got nothing")
    for g in unused:
        diffs.append(f"{source}: {image}: {g.label} {g.kind}: unexpected {describe(g)}")
    return diffs
