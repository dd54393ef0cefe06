"""Check that a Tessera export loads unchanged in the tools its users will open it with.

The Rust cluster tests export a dataset, unpack it, write the shapes they annotated to
expected.json, and run:

    python check_export.py --format FMT --dir EXPORT_DIR --expected expected.json [--no-images]

(keep expected.json outside EXPORT_DIR: LabelMe and CSV exports are found by their extension).

FMT: coco, voc, yolo, yolo-segment, yolo-pose, yolo-darknet, cvat, labelme, csv.

The export is read back by the format's real consumers (datumaro, pycocotools) and by our own
strict parsers of the documented layouts, and every shape must come back as that format
carries it (shapes.expected_items), within 0.5 px. Consumers drop data quietly, so a datumaro
warning or WARNING log counts as a failure too. Exit 0 with a one-line summary, or exit 1 with
one line per difference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from xml.etree import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parent))

from PIL import Image  # noqa: E402

import consumer_readers as consumers  # noqa: E402
import layout_readers as layouts  # noqa: E402
from shapes import Reading, compare, empty_boxes, expected_items, to_stored_frame  # noqa: E402

FORMATS = ("coco", "voc", "yolo", "yolo-segment", "yolo-pose", "yolo-darknet", "cvat", "labelme", "csv")
# Where each format keeps its images (a glob under the export; checked for presence, or for
# absence with --no-images).
IMAGE_DIRS = {"coco": "images", "voc": "JPEGImages", "yolo": "images", "yolo-segment": "images",
              "yolo-pose": "images", "yolo-darknet": "obj_*_data", "cvat": "images",
              "labelme": ".", "csv": "images"}


def placeholder(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path, format="PNG")


def stage_without_images(fmt: str, root: Path, sizes: dict[str, tuple[int, int]], tmp: Path) -> Path:
    """A copy of an annotations-only export with blank images of the declared sizes where the
    annotations expect them: datumaro's cvat and yolo importers cannot read labels without
    image files (they need the files to exist, or to measure them)."""
    staged = tmp / "staged"
    shutil.copytree(root, staged)
    if fmt == "cvat":  # annotations.xml, or one <subset>.xml per subset
        for xml in staged.glob("*.xml"):
            for image in ElementTree.parse(xml).getroot().iter("image"):
                size = (int(image.get("width")), int(image.get("height")))
                placeholder(staged / "images" / image.get("name"), size)
    elif fmt == "yolo":
        for label in (staged / "labels").rglob("*.txt"):
            target = staged / "images" / label.parent.relative_to(staged / "labels") / (label.stem + ".png")
            placeholder(target, sizes.get(label.stem, (1, 1)))
    elif fmt == "yolo-darknet":
        for list_file in staged.glob("*.txt"):  # <split>.txt, each naming data/<image path>
            for line in list_file.read_text(encoding="utf-8").splitlines():
                rel = line.strip().removeprefix("data/")
                if rel:
                    placeholder(staged / rel, sizes.get(Path(rel).stem, (1, 1)))
    return staged


def read_export(fmt: str, root: Path, with_images: bool, sizes, tmp: Path) -> tuple[list, list[str], list[str]]:
    """[(Reading, view)], structural problems, notes — every way this format gets read."""
    readings, problems, notes = [], [], []
    if fmt == "coco":
        ann_files, found = consumers.find_coco_files(root)
        problems += found
        readings.append((consumers.read_datumaro(str(root), "coco"), "coco"))
        coco = Reading(source="pycocotools", keypoints={})
        for ann_file in ann_files:  # one per subset
            part, file_names = consumers.read_pycocotools(ann_file)
            for stem in part.images.keys() & coco.images.keys():
                coco.problems.append(f"pycocotools: image {stem} in more than one subset")
            coco.images.update(part.images)
            coco.problems += part.problems
            coco.keypoints.update(part.keypoints or {})
            subset = ann_file.stem.removeprefix("person_keypoints_")
            for name in file_names if with_images else []:
                if not ((root / "images" / name).is_file() or (root / "images" / subset / name).is_file()):
                    problems.append(f"coco: image file_name {name} not in images/ or images/{subset}/")
        if ann_files:
            readings.append((coco, "coco"))
    elif fmt == "voc":
        readings.append((consumers.read_datumaro(str(root), "voc"), "voc"))
    elif fmt in ("yolo", "yolo-darknet"):
        source = root if with_images else stage_without_images(fmt, root, sizes, tmp)
        if not with_images:
            notes.append("datumaro read a copy with blank images of the expected sizes added")
        notes.append(f"datumaro importer 'yolo' (layout {consumers.datumaro_yolo_layout(str(source))})")
        readings.append((consumers.read_datumaro(str(source), "yolo"), "detect"))
        own = layouts.read_ultralytics(root, "detect", sizes) if fmt == "yolo" else layouts.read_darknet(root, sizes)
        readings.append((own, "detect"))
    elif fmt in ("yolo-segment", "yolo-pose"):
        mode = fmt.split("-")[1]
        readings.append((layouts.read_ultralytics(root, mode, sizes), mode))
    elif fmt == "cvat":
        source = root if with_images else stage_without_images(fmt, root, sizes, tmp)
        if not with_images:
            notes.append("datumaro read a copy with blank images of the declared sizes added")
        readings.append((consumers.read_datumaro(str(source), "cvat"), "cvat"))
    elif fmt == "labelme":
        # datumaro's 'label_me' importer is for MIT LabelMe XML, not this JSON: ours only.
        readings.append((layouts.read_labelme(root, with_images), "labelme"))
    elif fmt == "csv":
        readings.append((layouts.read_csv(root), "csv"))
    return readings, problems, notes


def check_image_files(fmt: str, root: Path, expected: dict, with_images: bool) -> list[str]:
    problems = []
    found = layouts.image_files(root)
    if not with_images:
        if found:
            problems.append(f"files: --no-images export contains images {[str(p.relative_to(root)) for p in found]}")
        if fmt == "coco" and not (root / "images").is_dir():
            problems.append("files: coco images/ must exist (empty) in an export without images")
        return problems
    folders = [root] if IMAGE_DIRS[fmt] == "." else [p for p in root.glob(IMAGE_DIRS[fmt]) if p.is_dir()]
    for image in expected["images"]:
        matches = [p for p in found if p.stem == image["file"] and any(f in p.parents for f in folders)]
        if not matches:
            problems.append(f"files: {image['file']}: no image file in {IMAGE_DIRS[fmt]}/")
        for p in matches:
            size = layouts.image_size(p)
            if size != (image["width"], image["height"]):
                problems.append(f"files: {p.relative_to(root)} is {size[0]}x{size[1]}, "
                                f"expected {image['width']}x{image['height']}")
            orientation = layouts.exif_orientation(p)
            if orientation not in (None, 1):
                problems.append(f"files: {p.relative_to(root)} keeps EXIF orientation {orientation}: "
                                "EXIF-aware readers would turn it away from its coordinates")
    if fmt == "voc":
        problems += layouts.check_voc_depth(root)
    return problems


def check_reading(read: Reading, view: str, expected: dict) -> list[str]:
    diffs = list(read.problems)
    src = read.source
    names = {label["name"]: label["keypoints"] for label in expected["labels"]}
    wanted = {image["file"]: image for image in expected["images"]}
    for stem in sorted(set(read.images) - set(wanted)):
        diffs.append(f"{src}: image {stem} is not in expected.json")
    for stem, image in wanted.items():
        got = read.images.get(stem)
        if got is None:
            diffs.append(f"{src}: image {stem} missing")
            continue
        if got.width is not None and (got.width, got.height) != (image["width"], image["height"]):
            diffs.append(f"{src}: {stem}: size {got.width}x{got.height}, expected {image['width']}x{image['height']}")
        want = [item for shape in image["shapes"]
                for item in expected_items(view, shape, names.get(shape["label"]))]
        diffs += compare(stem, want, got.items, src)
        if view in ("coco", "voc", "detect", "pose"):
            for box in empty_boxes(got.items):
                diffs.append(f"{src}: {stem}: {box.label} box {box.points} is less than 1 px wide or high")
    if read.keypoints is not None:
        for label in expected["labels"]:
            names = read.keypoints.get(label["name"], [])
            numbered = [str(n) for n in range(1, len(names) + 1)]  # for a label without names
            if names != label["keypoints"] and (label["keypoints"] or names != numbered):
                diffs.append(f"{src}: label {label['name']}: keypoints {names}, expected {label['keypoints']}")
    return diffs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--dir", required=True, type=Path, help="the unpacked export")
    parser.add_argument("--expected", required=True, type=Path, help="expected.json")
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--with-images", dest="with_images", action="store_true", default=True,
                        help="the export includes the image files (default)")
    images.add_argument("--no-images", dest="with_images", action="store_false",
                        help="annotation files only: image files must be absent")
    args = parser.parse_args(argv)

    expected = json.loads(args.expected.read_text(encoding="utf-8"))
    expected["images"] = [to_stored_frame(image) for image in expected["images"]]
    sizes = {image["file"]: (image["width"], image["height"]) for image in expected["images"]}
    root = args.dir.resolve()
    with tempfile.TemporaryDirectory(prefix="check_export-") as tmp:
        try:
            readings, diffs, notes = read_export(args.format, root, args.with_images, sizes, Path(tmp))
        except Exception as e:  # a file so malformed that a reader crashed: still one precise line
            where = traceback.extract_tb(e.__traceback__)[-1]
            readings, notes = [], []
            diffs = [f"unreadable export: {type(e).__name__}: {e} (at {Path(where.filename).name}:{where.lineno})"]
    diffs += check_image_files(args.format, root, expected, args.with_images)
    for read, view in readings:
        diffs += check_reading(read, view, expected)
        notes += read.notes

    if diffs:
        print(f"check_export: {args.format} FAILED, {len(diffs)} difference(s):")
        for line in diffs:
            print(f"  {line}")
        for line in notes:
            print(f"  note: {line}")
        return 1
    shapes = [shape for image in expected["images"] for shape in image["shapes"]]
    views = {view for _, view in readings}
    absent = sorted({s["kind"] for s in shapes for v in views
                     if not any(not i.optional for i in expected_items(v, s))})
    summary = (f"check_export: {args.format} OK: {len(expected['images'])} image(s), {len(shapes)} shape(s) "
               f"came back through {', '.join(read.source for read, _ in readings)}")
    if absent:
        summary += f"; not required back in this format: {', '.join(absent)}"
    if notes:
        summary += "; " + "; ".join(notes)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
