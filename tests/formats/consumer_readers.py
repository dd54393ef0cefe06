"""Read an export back the way its consumers do: datumaro's importers and pycocotools.

These tools drop data quietly (a skipped file, a logged warning, an item left out), so a read
counts as failed when datumaro raises, warns (Python warning) or logs at WARNING or above.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

from shapes import BBOX, LABEL, POINTS, POLYGON, POLYLINE, ROTATED, ImageRead, Item, Reading, extent


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"logged {record.levelname} ({record.name}): {record.getMessage()}")


@contextlib.contextmanager
def strict(problems: list[str], source: str):
    """Turn every Python warning and every WARNING+ log record inside the block into a problem."""
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        root.removeHandler(handler)
        problems.extend(f"{source}: {line}" for line in handler.lines)
        problems.extend(f"{source}: warned {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
                        for w in caught)


def _pairs(flat) -> list[tuple[float, float]]:
    flat = [float(v) for v in flat]
    return list(zip(flat[0::2], flat[1::2]))


def datumaro_yolo_layout(path: str) -> str:
    """Which layout of the 'yolo' importer (yolo_strict/yolo_loose/yolo_ultralytics) datumaro picks."""
    from datumaro.plugins.data_formats.yolo.importer import YoloImporter

    sources = YoloImporter.find_sources(path)
    return sources[0]["format"] if sources else "none"


def read_datumaro(path: str, fmt: str) -> Reading:
    """Dataset.import_from(path, fmt), every item and annotation converted to Items."""
    from datumaro.components.annotation import AnnotationType
    from datumaro.components.contexts.importer import FailingImportErrorPolicy
    from datumaro.components.dataset import Dataset

    read = Reading(source=f"datumaro '{fmt}'")
    try:
        with strict(read.problems, read.source):
            # An explicit error policy makes the import eager: every item is parsed here, and the
            # first bad item or annotation raises instead of being skipped.
            dataset = Dataset.import_from(path, fmt, error_policy=FailingImportErrorPolicy())
            entries = list(dataset)
            categories = dataset.categories()
    except Exception as e:  # the importer's own words are the useful diagnosis
        chain, cause = [], e
        while cause is not None:
            chain.append(f"{type(cause).__name__}: {cause}")
            cause = cause.__cause__
        read.problems.append(f"{read.source}: import failed: " + " <- ".join(chain))
        return read

    label_cat = categories.get(AnnotationType.label)
    names = [c.name for c in label_cat.items] if label_cat else []
    ignored: dict[str, int] = {}
    for entry in entries:
        stem = os.path.basename(entry.id)
        if stem in read.images:
            read.problems.append(f"{read.source}: image {stem} appears twice")
        image = read.images.setdefault(stem, ImageRead())
        try:
            if entry.media is not None and entry.media.size is not None:
                image.height, image.width = entry.media.size
        except Exception as e:
            read.problems.append(f"{read.source}: {stem}: image size unreadable: {e}")
        for ann in entry.annotations:
            label_id = getattr(ann, "label", None)
            if label_id is None or not 0 <= label_id < len(names):
                read.problems.append(f"{read.source}: {stem}: {ann.type.name} annotation without a known label")
                continue
            label, t = names[label_id], ann.type
            if t == AnnotationType.bbox:
                x, y, w, h = ann.get_bbox()
                if "rotation" in ann.attributes:
                    image.items.append(Item(label, ROTATED, [(x, y), (x + w, y + h)],
                                            angle=float(ann.attributes["rotation"])))
                else:
                    image.items.append(Item(label, BBOX, [(x, y), (x + w, y + h)]))
            elif t == AnnotationType.rotated_bbox:
                x1, y1 = ann.cx - ann.w / 2, ann.cy - ann.h / 2
                image.items.append(Item(label, ROTATED, [(x1, y1), (x1 + ann.w, y1 + ann.h)], angle=ann.r))
            elif t == AnnotationType.polygon:
                image.items.append(Item(label, POLYGON, _pairs(ann.points)))
            elif t == AnnotationType.polyline:
                image.items.append(Item(label, POLYLINE, _pairs(ann.points)))
            elif t == AnnotationType.points and not ann.points:
                # datumaro reads every object of a person_keypoints file as Points too, empty
                # when the object has no keypoints (a box, a polygon): not a shape.
                ignored["empty points"] = ignored.get("empty points", 0) + 1
            elif t == AnnotationType.points:
                # Keypoints that are not labelled (visibility 0, "absent") are placeholders.
                flags = [int(v) for v in ann.visibility]
                kept = [(p, v) for p, v in zip(_pairs(ann.points), flags) if v != 0]
                image.items.append(Item(label, POINTS, [p for p, _ in kept], visibility=[v for _, v in kept]))
            elif t == AnnotationType.label:
                image.items.append(Item(label, LABEL, []))
            else:
                ignored[t.name] = ignored.get(t.name, 0) + 1
    for name, count in sorted(ignored.items()):
        read.notes.append(f"{read.source}: ignored {count} {name} annotation(s)")

    points_cat = categories.get(AnnotationType.points)
    if points_cat is not None:
        read.keypoints = {names[i]: list(cat.labels) for i, cat in points_cat.items.items()}
    return read


def find_coco_files(root: Path) -> tuple[list[Path], list[str]]:
    """The annotations/person_keypoints_<subset>.json files (one per subset), and complaints
    about any other *_*.json, which datumaro would also try to load."""
    candidates = sorted(root.rglob("*_*.json"))
    wanted = [p for p in candidates
              if p.parent == root / "annotations" and p.name.startswith("person_keypoints_")]
    problems = []
    if not wanted:
        problems.append("coco: no annotations/person_keypoints_<subset>.json")
    others = [str(p.relative_to(root)) for p in candidates if p not in wanted]
    if others:
        problems.append(f"coco: other *_*.json files that datumaro would also try: {others}")
    if not (root / "images").is_dir():
        problems.append("coco: images/ directory missing")
    return wanted, problems


def read_pycocotools(ann_file: Path) -> tuple[Reading, list[str]]:
    """COCO(ann_file), plus the rules pycocotools does not enforce itself (ids resolve, boxes
    inside the image, polygons of >= 3 points, category ids >= 1, bbox = polygon extent).

    Returns the reading and the images' file_name values.
    """
    from pycocotools.coco import COCO

    read = Reading(source="pycocotools")
    src, problems = read.source, read.problems
    raw = json.loads(ann_file.read_text(encoding="utf-8"))
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            problems.append(f"{src}: '{key}' missing or not a list")
            return read, []

    for kind in ("images", "annotations", "categories"):
        ids = [x.get("id") for x in raw[kind]]
        dup = sorted({i for i in ids if ids.count(i) > 1}, key=str)
        if dup:
            problems.append(f"{src}: duplicate {kind} ids {dup}")
    for c in raw["categories"]:
        if not isinstance(c.get("id"), int) or c["id"] < 1:
            problems.append(f"{src}: category {c.get('name')!r} has id {c.get('id')!r} (must be an int >= 1)")
        if not isinstance(c.get("keypoints"), list) or not isinstance(c.get("skeleton"), list):
            problems.append(f"{src}: category {c.get('name')!r} lacks 'keypoints'/'skeleton' lists")

    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
        coco = COCO(str(ann_file))

    file_names = []
    for img in coco.imgs.values():
        file_names.append(img["file_name"])
        read.images[Path(img["file_name"]).stem] = ImageRead(width=img.get("width"), height=img.get("height"))

    for ann in raw["annotations"]:
        aid = ann.get("id")
        img = coco.imgs.get(ann.get("image_id"))
        cat = coco.cats.get(ann.get("category_id"))
        if img is None:
            problems.append(f"{src}: annotation {aid}: unknown image_id {ann.get('image_id')!r}")
            continue
        if cat is None:
            problems.append(f"{src}: annotation {aid}: unknown category_id {ann.get('category_id')!r}")
            continue
        stem, label, W, H = Path(img["file_name"]).stem, cat["name"], img["width"], img["height"]
        where = f"{src}: {stem}: annotation {aid} ({label})"
        for key in ("iscrowd", "area", "bbox", "segmentation", "keypoints", "num_keypoints"):
            if key not in ann:
                problems.append(f"{where}: field '{key}' missing")
        items = read.images[stem].items
        bbox = ann.get("bbox") or []
        if bbox:
            x, y, w, h = (float(v) for v in bbox)
            if w < 0 or h < 0 or x < -1e-6 or y < -1e-6 or x + w > W + 1e-6 or y + h > H + 1e-6:
                problems.append(f"{where}: bbox {bbox} not inside the {W}x{H} image")
            items.append(Item(label, BBOX, [(x, y), (x + w, y + h)]))
        segmentation = ann.get("segmentation") or []
        if isinstance(segmentation, dict):
            problems.append(f"{where}: RLE segmentation (expected polygons)")
            segmentation = []
        for poly in segmentation:
            if len(poly) % 2 or len(poly) < 6:
                problems.append(f"{where}: polygon with {len(poly)} values (need an even count >= 6)")
                continue
            items.append(Item(label, POLYGON, _pairs(poly)))
            if bbox:
                (ex1, ey1), (ex2, ey2) = extent(_pairs(poly))
                if max(abs(ex1 - x), abs(ey1 - y), abs(ex2 - x - w), abs(ey2 - y - h)) > 0.5:
                    problems.append(f"{where}: bbox {bbox} is not the polygon's extent")
        if segmentation:
            try:
                if coco.annToMask(ann).sum() == 0:
                    problems.append(f"{where}: polygon rasterises to an empty mask")
            except Exception as e:
                problems.append(f"{where}: pycocotools cannot rasterise the segmentation: {e}")
        keypoints = ann.get("keypoints") or []
        if keypoints:
            names = cat.get("keypoints") or []
            if len(keypoints) != 3 * len(names):
                problems.append(f"{where}: {len(keypoints)} keypoint values for {len(names)} keypoints")
            triplets = [keypoints[i:i + 3] for i in range(0, len(keypoints) - 2, 3)]
            if ann.get("num_keypoints") != sum(1 for t in triplets if t[2] > 0):
                problems.append(f"{where}: num_keypoints {ann.get('num_keypoints')} does not count v > 0")
            if any(not isinstance(t[2], int) or t[2] not in (0, 1, 2) for t in triplets):
                problems.append(f"{where}: keypoint visibility {[t[2] for t in triplets]} (integers 0, 1, 2)")
            if any(t[2] == 0 and (t[0], t[1]) != (0, 0) for t in triplets):
                problems.append(f"{where}: a keypoint with v = 0 is not 0, 0, 0: {triplets}")
            kept = [t for t in triplets if t[2] != 0]
            items.append(Item(label, POINTS, [(float(t[0]), float(t[1])) for t in kept],
                              visibility=[int(t[2]) for t in kept]))
    read.keypoints = {c["name"]: list(c.get("keypoints") or []) for c in coco.cats.values()}
    return read, file_names
