"""Our own parsers for the layouts that datumaro cannot (fully) read: Ultralytics detect /
segment / pose and Darknet YOLO, LabelMe JSON, and Tessera's CSV.

Each follows the layout as its tool documents it, strictly: where the tool would silently skip
or misread something, the parser reports a problem instead. Sizes for normalised YOLO
coordinates come from the image files, or from expected.json when the export has no images.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import yaml
from PIL import Image

from shapes import BBOX, LABEL, POINTS, POLYGON, POLYLINE, ROTATED, ImageRead, Item, Reading

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
PLAIN_DECIMAL = re.compile(r"^\d+(\.\d+)?$")  # no sign, no exponent
CLASS_ID = re.compile(r"^\d+$")


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:  # reads the header only; EXIF orientation not applied
        return im.size


def exif_orientation(path: Path) -> int | None:
    with Image.open(path) as im:
        return im.getexif().get(0x0112)


# PIL modes and the VOC <depth> (channels) they have.
DEPTHS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "P": 3, "RGB": 3, "YCbCr": 3,
          "RGBA": 4, "CMYK": 4}


def check_voc_depth(root: Path) -> list[str]:
    """Each Annotations/<id>.xml's <depth> is the channel count of its JPEGImages file."""
    from xml.etree import ElementTree

    problems = []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        doc = ElementTree.parse(xml).getroot()
        depth = doc.findtext("size/depth")
        image = root / "JPEGImages" / (doc.findtext("filename") or "")
        if not image.is_file():
            continue
        with Image.open(image) as im:
            mode = im.mode
            if mode == "P" and "transparency" in im.info:
                mode = "RGBA"
        if str(DEPTHS.get(mode, 3)) != depth:
            problems.append(f"voc: {xml.name}: depth {depth} for a {mode} image (expected {DEPTHS.get(mode, 3)})")
    return problems


# ---------------------------------------------------------------- YOLO (Ultralytics, Darknet)

def _yolo_line(line: str, mode: str, names: list[str], size: tuple[int, int], kpts: tuple[int, int],
               where: str, problems: list[str]) -> Item | None:
    """One label line → an Item in pixels (None, with a problem, when the line is unusable)."""
    fields = line.split(" ")
    if not fields or not CLASS_ID.match(fields[0]) or int(fields[0]) >= len(names):
        problems.append(f"{where}: class {fields[0]!r} is not an index into names ({len(names)})")
        return None
    count, dims = kpts
    # Pose lines with 3 keypoint dims end each triplet with a visibility flag 0, 1 or 2.
    flags = {4 + i * 3 + 2 for i in range(count)} if mode == "pose" and dims == 3 else set()
    bad = [f for n, f in enumerate(fields[1:])
           if (f not in ("0", "1", "2") if n in flags else not PLAIN_DECIMAL.match(f) or float(f) > 1.0)]
    if bad:
        problems.append(f"{where}: values {bad} are not plain decimals in [0, 1] (or 0/1/2 visibility flags)")
        return None
    label, values, (W, H) = names[int(fields[0])], [float(f) for f in fields[1:]], size
    if mode == "segment":
        if len(values) % 2 or len(values) < 6:
            problems.append(f"{where}: segment line needs >= 3 x y pairs, got {len(values)} values")
            return None
        return Item(label, POLYGON, [(x * W, y * H) for x, y in zip(values[0::2], values[1::2])])
    want = 4 + (kpts[0] * kpts[1] if mode == "pose" else 0)
    if len(values) != want:
        problems.append(f"{where}: {len(values) + 1} fields, expected {want + 1} for {mode}")
        return None
    cx, cy, w, h = values[:4]
    if cx - w / 2 < -1e-5 or cy - h / 2 < -1e-5 or cx + w / 2 > 1 + 1e-5 or cy + h / 2 > 1 + 1e-5:
        problems.append(f"{where}: box {values[:4]} reaches outside the image")
    x1, y1, x2, y2 = (cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H
    if mode == "detect":
        return Item(label, BBOX, [(x1, y1), (x2, y2)])
    # Keypoints: visible ones (v=2) first, then padding (0 0 0) up to kpt_shape's count. An
    # object with no keypoints at all (a box, an outline) is all padding and reads as its box.
    # Keypoints: x y v triplets; an absent one (not labelled, or padding up to kpt_shape's
    # count) is 0 0 0.
    triplets = [values[4 + i * dims: 4 + (i + 1) * dims] for i in range(count)]
    present = [t[2] != 0 if dims == 3 else t != [0.0, 0.0] for t in triplets]
    if not any(present):
        return Item(label, BBOX, [(x1, y1), (x2, y2)])
    if any(t != [0.0] * dims for t, p in zip(triplets, present) if not p):
        problems.append(f"{where}: absent keypoints {triplets} must be 0 0 0")
    kept = [t for t, p in zip(triplets, present) if p]
    points = [(t[0] * W, t[1] * H) for t in kept]
    if any(not (x1 - 0.5 <= x <= x2 + 0.5 and y1 - 0.5 <= y <= y2 + 0.5) for x, y in points):
        problems.append(f"{where}: keypoints fall outside the object's box")
    return Item(label, POINTS, points, visibility=[int(t[2]) for t in kept] if dims == 3 else None)


def _read_label_file(read: Reading, stem: str, label_file: Path, mode: str, names: list[str],
                     size: tuple[int, int] | None, kpts: tuple[int, int]) -> None:
    if stem in read.images:
        read.problems.append(f"{read.source}: image stem {stem} appears twice")
        return
    image = read.images[stem] = ImageRead(*(size or (None, None)))
    if not label_file.is_file():
        read.problems.append(f"{read.source}: {stem}: label file {label_file.name} missing "
                             "(write an empty one for an image without objects)")
        return
    if size is None:
        read.problems.append(f"{read.source}: {stem}: image size unknown, cannot denormalise")
        return
    for n, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = _yolo_line(line.strip(), mode, names, size, kpts, f"{read.source}: {stem}: line {n}",
                          read.problems)
        if item is not None:
            image.items.append(item)


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, the suffix .txt."""
    parts = list(image.parts)
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_ultralytics(root: Path, mode: str, sizes: dict[str, tuple[int, int]]) -> Reading:
    """data.yaml (names, optional nc/kpt_shape, no path), splits as image dirs or list files,
    labels/<split>/<stem>.txt next to images/<split>/. mode: detect | segment | pose."""
    read = Reading(source=f"own Ultralytics {mode} parser")
    src = read.source
    config_file = root / "data.yaml"
    if not config_file.is_file():
        read.problems.append(f"{src}: data.yaml missing")
        return read
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    names = config.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            read.problems.append(f"{src}: names keys {sorted(names)} are not 0..{len(names) - 1}")
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        read.problems.append(f"{src}: 'names' missing or empty")
        return read
    if "nc" in config and config["nc"] != len(names):
        read.problems.append(f"{src}: nc {config['nc']} but {len(names)} names")
    kpts = (0, 0)
    if mode == "pose":
        shape = config.get("kpt_shape")
        if not (isinstance(shape, list) and len(shape) == 2 and shape[1] in (2, 3)):
            read.problems.append(f"{src}: kpt_shape {shape!r} is not [count, 2 or 3]")
            return read
        kpts = (int(shape[0]), int(shape[1]))
    if "path" in config:
        # Ultralytics (check_det_dataset) takes `path` as given, relative to the working directory
        # or else its datasets dir; only without `path` is the root data.yaml's own folder.
        read.problems.append(f"{src}: data.yaml sets path: {config['path']!r}; Ultralytics resolves it "
                             "against the working directory, not data.yaml's folder: leave it out")
    base = root
    splits = {k: config[k] for k in ("train", "val", "test") if config.get(k)}
    if not splits:
        read.problems.append(f"{src}: no train/val/test entry")
    seen_targets = set()  # val may name the train dir when there is one split: read it once
    seen: set[Path] = set()
    for split, value in splits.items():
        for entry in value if isinstance(value, list) else [value]:
            target = base / str(entry)
            if target in seen:  # val may name the train folder when there is one split
                continue
            seen.add(target)
            if target in seen_targets:
                continue
            seen_targets.add(target)
            if target.suffix == ".txt":
                listed = [base / line.strip() for line in target.read_text(encoding="utf-8").splitlines()
                          if line.strip()] if target.is_file() else []
                if not target.is_file():
                    read.problems.append(f"{src}: {split} list {entry} missing")
                images = listed
            elif "images" not in target.parts:
                read.problems.append(f"{src}: {split} dir {entry} has no 'images' component")
                continue
            else:
                images = image_files(target) if target.is_dir() else []
            if images:
                for img in images:
                    size = image_size(img) if img.is_file() else sizes.get(img.stem)
                    _read_label_file(read, img.stem, _label_path(img), mode, names, size, kpts)
            else:  # an annotations-only export: the labels are all there is
                labels_dir = _label_path(target / "x").parent
                for lab in sorted(labels_dir.glob("*.txt")) if labels_dir.is_dir() else []:
                    _read_label_file(read, lab.stem, lab, mode, names, sizes.get(lab.stem), kpts)
    return read


def read_darknet(root: Path, sizes: dict[str, tuple[int, int]]) -> Reading:
    """obj.data (classes, <split> = data/<split>.txt, names = data/obj.names), each list naming
    data/obj_<split>_data/<image>, and <image stem>.txt beside each image."""
    read = Reading(source="own Darknet YOLO parser")
    src = read.source
    data_file = root / "obj.data"
    if not data_file.is_file():
        read.problems.append(f"{src}: obj.data missing")
        return read
    config = {}
    for line in data_file.read_text(encoding="utf-8").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            config[key.strip()] = value.strip()

    def local(path: str) -> Path:
        return root / (path[len("data/"):] if path.startswith("data/") else path)

    names_file = local(config.get("names", "obj.names"))
    if not names_file.is_file():
        read.problems.append(f"{src}: names file {names_file.name} missing")
        return read
    names = [n.strip() for n in names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    if config.get("classes") != str(len(names)):
        read.problems.append(f"{src}: classes = {config.get('classes')} but {len(names)} names")
    for split in [k for k in config if k not in ("classes", "names", "backup")]:
        list_file = local(config[split])
        if not list_file.is_file():
            read.problems.append(f"{src}: {split} list {config[split]} missing")
            continue
        for line in list_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                img = local(line.strip())
                size = image_size(img) if img.is_file() else sizes.get(img.stem)
                _read_label_file(read, img.stem, img.with_suffix(".txt"), "detect", names, size, (0, 0))
    return read


# ---------------------------------------------------------------- LabelMe

def read_labelme(root: Path, with_images: bool) -> Reading:
    """One LabelMe JSON per image: {version, flags, shapes[{label, points, group_id, shape_type,
    flags}], imagePath, imageData, imageHeight, imageWidth}."""
    read = Reading(source="own LabelMe parser")
    src = read.source
    for json_file in sorted(root.rglob("*.json")):
        where = f"{src}: {json_file.relative_to(root)}"
        try:
            doc = json.loads(json_file.read_text(encoding="utf-8"))
        except ValueError as e:
            read.problems.append(f"{where}: not JSON: {e}")
            continue
        missing = [k for k in ("version", "flags", "shapes", "imagePath", "imageData", "imageHeight",
                               "imageWidth") if k not in doc]
        if missing:
            read.problems.append(f"{where}: keys {missing} missing")
            continue
        stem = Path(doc["imagePath"]).stem
        if with_images and not (json_file.parent / doc["imagePath"]).is_file():
            read.problems.append(f"{where}: imagePath {doc['imagePath']} does not resolve")
        if stem in read.images:
            read.problems.append(f"{where}: second file for image {stem}")
            continue
        image = read.images[stem] = ImageRead(doc["imageWidth"], doc["imageHeight"])
        for name, value in (doc["flags"] or {}).items():
            if value is True:
                image.items.append(Item(name, LABEL, []))
        groups: dict[tuple[str, int], Item] = {}
        for n, shape in enumerate(doc["shapes"]):
            kind, label = shape.get("shape_type"), shape.get("label")
            pts = [(float(x), float(y)) for x, y in shape.get("points", [])]
            if "group_id" not in shape or not isinstance(shape.get("flags", {}), dict):
                read.problems.append(f"{where}: shape {n}: needs group_id and a flags object")
            if kind == "rectangle" and len(pts) == 2:
                (ax, ay), (bx, by) = pts
                if ax > bx or ay > by:
                    read.problems.append(f"{where}: shape {n}: rectangle {pts} does not start at its top-left corner")
                image.items.append(Item(label, BBOX, [(min(ax, bx), min(ay, by)), (max(ax, bx), max(ay, by))]))
            elif kind == "polygon" and len(pts) >= 3:
                image.items.append(Item(label, POLYGON, pts))
            elif kind in ("linestrip", "line") and len(pts) >= 2:
                image.items.append(Item(label, POLYLINE, pts))
            elif kind == "point" and len(pts) == 1:
                group = shape.get("group_id")
                flag = 1 if (shape.get("flags") or {}).get("occluded") is True else 2
                name = shape.get("description") or ""
                if group is None:
                    image.items.append(Item(label, POINTS, pts, visibility=[flag], names=[name]))
                elif (label, group) in groups:
                    groups[(label, group)].points.extend(pts)
                    groups[(label, group)].visibility.append(flag)
                    groups[(label, group)].names.append(name)
                else:
                    groups[(label, group)] = Item(label, POINTS, list(pts), visibility=[flag], names=[name])
                    image.items.append(groups[(label, group)])
            else:
                read.problems.append(f"{where}: shape {n}: shape_type {kind!r} with {len(pts)} points")
    return read


# ---------------------------------------------------------------- CSV

CSV_HEADER = ["image", "width", "height", "label", "kind", "angle", "points", "visibility", "occluded"]
CSV_KINDS = {"rectangle": BBOX, "polygon": POLYGON, "polyline": POLYLINE,
             "rotated_rectangle": ROTATED, "points": POINTS, "tag": LABEL}


def read_csv(root: Path) -> Reading:
    """One row per shape: image,width,height,label,kind,angle,points,visibility,occluded (points a
    JSON [[x,y],...]; angle only for rotated_rectangle; visibility a JSON list of flags, or empty;
    occluded 1 or 0). An image without shapes has one row with empty label, kind and occluded,
    so every image is listed."""
    read = Reading(source="own CSV parser")
    src = read.source
    files = sorted(root.rglob("*.csv"))
    if len(files) != 1:
        read.problems.append(f"{src}: expected one .csv file, found {[str(f.relative_to(root)) for f in files]}")
        return read
    with files[0].open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != CSV_HEADER:
        read.problems.append(f"{src}: header {rows[0] if rows else None} is not {','.join(CSV_HEADER)}")
        return read
    for n, row in enumerate(rows[1:], 2):
        where = f"{src}: line {n}"
        if len(row) != len(CSV_HEADER):
            read.problems.append(f"{where}: {len(row)} columns")
            continue
        name, width, height, label, kind, angle, points, flags, occluded = row
        stem = Path(name).stem
        try:
            size = (int(width), int(height))
            pts = [(float(x), float(y)) for x, y in json.loads(points or "[]")]
            visibility = [int(v) for v in json.loads(flags)] if flags else None
        except (ValueError, TypeError) as e:
            read.problems.append(f"{where}: bad width/height/points: {e}")
            continue
        image = read.images.setdefault(stem, ImageRead(*size))
        if (image.width, image.height) != size:
            read.problems.append(f"{where}: {stem} size {size} differs from its earlier rows")
        if not label and not kind and not pts and not occluded:
            continue  # an image without shapes
        if occluded not in ("0", "1"):
            read.problems.append(f"{where}: occluded {occluded!r} (1 or 0)")
        if kind not in CSV_KINDS:
            read.problems.append(f"{where}: kind {kind!r}")
            continue
        if (kind == "rotated_rectangle") != (angle != ""):
            read.problems.append(f"{where}: angle {angle!r} for a {kind}")
        try:
            turn = float(angle) if kind == "rotated_rectangle" else None
        except ValueError:
            read.problems.append(f"{where}: angle {angle!r} is not a number")
            continue
        if visibility is not None and (kind != "points" or len(visibility) != len(pts)):
            read.problems.append(f"{where}: visibility {visibility} for a {kind} of {len(pts)} points")
        if kind == "points" and visibility is None:
            visibility = [2] * len(pts)
        if kind == "rectangle" and len(pts) == 2:  # as drawn: either pair of opposite corners
            pts = [(min(p[0] for p in pts), min(p[1] for p in pts)), (max(p[0] for p in pts), max(p[1] for p in pts))]
        image.items.append(Item(label, CSV_KINDS[kind], pts, angle=turn, visibility=visibility))
    return read
