"""Tessera shapes, what each export format should turn them into, and how to compare.

check_export.py reads an export back through several consumers (datumaro, pycocotools, our own
parsers of the Ultralytics / LabelMe / CSV layouts). Every reader produces `Item`s in pixel
coordinates; this module says which `Item`s each Tessera shape must come back as in each
format ("view"), and lists the differences between what was expected and what came back.

Coordinates are Tessera's: continuous pixels, origin at the top-left corner, 0-based.
A rotated rectangle is its unrotated box's corners plus a clockwise angle in degrees about the
box centre (clockwise on screen, with y pointing down — the convention of CVAT and datumaro).
Keypoint sets may carry `visibility` (0 not labelled, 1 occluded, 2 visible, per point): a
point with 0 is a placeholder and must not come back as a point anywhere but in CSV.

An image with an EXIF orientation (`orientation` 2-8 in expected.json, with the size and shapes
as displayed, i.e. as the annotator drew them) must come back in its stored pixel frame: size
and coordinates as EXIF-blind readers see the pixels (`to_stored_frame`).
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
    # Keypoints: the flag (1 occluded, 2 visible) of each point, and its name, when the reader
    # can tell (None: not compared).
    visibility: list[int] | None = None
    names: list[str] | None = None
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


def box(points: list[Point]) -> list[Point]:
    """The box a box-only format writes: the extent, widened to 1 px about its centre where it
    is narrower (readers reject empty boxes; shapes at the image's edge are not modelled)."""
    (x1, y1), (x2, y2) = extent(points)
    if x2 - x1 < 1:
        x1, x2 = (x1 + x2) / 2 - 0.5, (x1 + x2) / 2 + 0.5
    if y2 - y1 < 1:
        y1, y2 = (y1 + y2) / 2 - 0.5, (y1 + y2) / 2 + 0.5
    return [(x1, y1), (x2, y2)]


def box_corners(p1: Point, p2: Point) -> list[Point]:
    (x1, y1), (x2, y2) = p1, p2
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


# What each Tessera kind becomes in each view. A view is one way of reading an export;
# several formats share one (yolo and yolo-darknet both read as "detect"). Points in the "pose"
# view assume their label names as many keypoints as the set has (else the exporter drops them).
def expected_items(view: str, shape: dict, names: list[str] | None = None) -> list[Item]:
    """`names`: the keypoint names of the shape's label (for views that carry them)."""
    kind, label = shape["kind"], shape["label"]
    pts = [(float(x), float(y)) for x, y in shape.get("points", [])]
    angle = float(shape.get("angle") or 0.0)
    if kind == "rectangle":  # either pair of opposite corners: the box is the same
        pts = extent(pts)
    flags = shape.get("visibility") or [2] * len(pts)
    if kind == "points" and view != "csv":
        labelled = [i for i, v in enumerate(flags) if v != 0]
        keypoint_names = [names[i] if names and i < len(names) else str(i + 1) for i in labelled]
        pts = [pts[i] for i in labelled]
        flags = [flags[i] for i in labelled]

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
            return [item(POINTS, pts, visibility=flags), item(BBOX, box(pts), optional=True)]
        return []  # polyline, tag: COCO has no place for them
    if view in ("voc", "detect"):
        if kind == "rectangle":
            return [item(BBOX, box(pts))]
        if kind in ("polygon", "polyline"):
            return [item(BBOX, box(pts))]
        if kind == "rotated_rectangle":
            return [item(BBOX, box(rotated))]
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
            return [item(POINTS, pts, visibility=flags)]
        return []
    if view == "cvat" or view == "csv":
        if kind == "points":  # CVAT readers see the labelled points, CSV has every flag
            return [item(POINTS, pts, visibility=flags if view == "csv" else None)]
        mapping = {"rectangle": BBOX, "polygon": POLYGON, "polyline": POLYLINE,
                   "points": POINTS, "tag": LABEL}
        if kind == "rotated_rectangle":
            return [item(ROTATED, pts, angle=angle)]
        return [item(mapping[kind], pts)]
    if view == "labelme":
        if kind == "rotated_rectangle":
            return [item(POLYGON, rotated, cyclic=True)]
        if kind == "points":
            return [item(POINTS, pts, visibility=flags, names=keypoint_names)]
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
    if expected.visibility is not None and got.visibility is not None \
            and list(expected.visibility) != list(got.visibility):
        return math.inf
    if expected.names is not None and got.names is not None and expected.names != got.names:
        return math.inf
    if expected.kind == ROTATED:
        # The same rectangle has several (box, angle) descriptions: compare the corners.
        a = rotated_corners(*expected.points, expected.angle or 0.0)
        b = rotated_corners(*got.points, got.angle or 0.0)
        return min(max(max(abs(p[0] - q[0]), abs(p[1] - q[1])) for p, q in zip(a, v))
                   for v in _variants(b, True))
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
    if item.visibility is not None:
        text += f" visibility {list(item.visibility)}"
    if item.names is not None:
        text += f" names {item.names}"
    return text


def _to_stored(orientation: int, w: float, h: float, p: Point) -> Point:
    """A point of the displayed w x h frame in the stored frame (EXIF orientation 2-8)."""
    x, y = p
    return {2: (w - x, y), 3: (w - x, h - y), 4: (x, h - y), 5: (y, x), 6: (y, w - x),
            7: (h - y, w - x), 8: (h - y, x)}.get(orientation, (x, y))


def to_stored_frame(image: dict) -> dict:
    """An expected.json image with `orientation` as EXIF-blind readers must see it: stored size,
    every shape's points moved into the stored frame (a rotated rectangle as its turned corners'
    centre, sides and the angle of its first side; a rectangle as its new extent)."""
    o = image.get("orientation") or 1
    if o == 1:
        return image
    w, h = image["width"], image["height"]
    out = dict(image, orientation=1)
    if o >= 5:
        out["width"], out["height"] = h, w
    shapes = []
    for shape in image["shapes"]:
        shape = dict(shape)
        pts = [tuple(map(float, p)) for p in shape.get("points", [])]
        if shape["kind"] == "rotated_rectangle":
            c = [_to_stored(o, w, h, p) for p in rotated_corners(pts[0], pts[1], float(shape["angle"]))]
            cx, cy = (c[0][0] + c[2][0]) / 2, (c[0][1] + c[2][1]) / 2
            sw, sh = math.dist(c[0], c[1]), math.dist(c[1], c[2])
            shape["angle"] = math.degrees(math.atan2(c[1][1] - c[0][1], c[1][0] - c[0][0])) % 360.0
            shape["points"] = [[cx - sw / 2, cy - sh / 2], [cx + sw / 2, cy + sh / 2]]
        elif shape["kind"] == "rectangle":
            shape["points"] = [list(p) for p in extent([_to_stored(o, w, h, p) for p in pts])]
        else:
            shape["points"] = [list(_to_stored(o, w, h, p)) for p in pts]
        shapes.append(shape)
    out["shapes"] = shapes
    return out


def empty_boxes(items: list[Item]) -> list[Item]:
    """Boxes less than a pixel wide or high (readers reject them)."""
    return [i for i in items if i.kind == BBOX and len(i.points) == 2
            and (abs(i.points[1][0] - i.points[0][0]) < 1 - 1e-3
                 or abs(i.points[1][1] - i.points[0][1]) < 1 - 1e-3)]


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
