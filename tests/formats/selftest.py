"""Prove that check_export.py can fail: hand-written exports of a small annotated dataset must
pass, and the same exports with one shape moved by 3 px (or another known trap) must not.

The writers below are deliberately minimal, written from the format descriptions in
/work/shared/formats.md; they are test scaffolding, not Tessera's exporter.

    python selftest.py        # exit 0 when every case behaves as expected
"""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from shapes import extent, rotated_corners  # noqa: E402

EXPECTED = {
    "labels": [{"name": "car", "keypoints": []},
               {"name": "person", "keypoints": ["head", "hand"]},
               {"name": "sunny", "keypoints": []}],
    "images": [
        {"file": "img-001", "width": 64, "height": 48, "shapes": [
            {"label": "car", "kind": "rectangle", "points": [[4.5, 6.25], [20, 18]]},
            {"label": "car", "kind": "polygon", "points": [[30, 5], [50, 8], [44, 20], [32, 16]]},
            {"label": "car", "kind": "polyline", "points": [[2, 40], [20, 30], [40, 44]]},
            {"label": "car", "kind": "rotated_rectangle", "points": [[40, 26], [56, 34]], "angle": 30.0},
            {"label": "person", "kind": "points", "points": [[10, 25], [16, 33]]},
            {"label": "sunny", "kind": "tag", "points": []}]},
        {"file": "img-002", "width": 32, "height": 24, "shapes": []},
    ],
}


def labels(expected):
    return [label["name"] for label in expected["labels"]]


def shapes_of(image, *kinds):
    return [s for s in image["shapes"] if s["kind"] in kinds]


def corners(shape):
    """The polygon a shape becomes where only polygons travel."""
    pts = [tuple(p) for p in shape["points"]]
    if shape["kind"] == "rotated_rectangle":
        return rotated_corners(pts[0], pts[1], shape["angle"])
    if shape["kind"] == "rectangle":
        (x1, y1), (x2, y2) = pts
        return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    return pts


def write_images(folder: Path, expected, with_images: bool, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    if with_images:
        for n, image in enumerate(expected["images"]):
            Image.new("RGB", (image["width"], image["height"]), (40 * n, 120, 200)).save(folder / (image["file"] + ext))


def write_coco(out: Path, expected, with_images=True):
    cats = [{"id": i + 1, "name": l["name"], "supercategory": "", "keypoints": l["keypoints"], "skeleton": []}
            for i, l in enumerate(expected["labels"])]
    cat_id = {c["name"]: c["id"] for c in cats}
    images, anns = [], []
    for n, image in enumerate(expected["images"], 1):
        images.append({"id": n, "file_name": image["file"] + ".png", "width": image["width"], "height": image["height"]})
        for shape in image["shapes"]:
            ann = {"id": len(anns) + 1, "image_id": n, "category_id": cat_id[shape["label"]], "iscrowd": 0,
                   "segmentation": [], "keypoints": [], "num_keypoints": 0}
            if shape["kind"] == "rectangle":
                region = shape["points"]
            elif shape["kind"] in ("polygon", "rotated_rectangle"):
                region = corners(shape)
                ann["segmentation"] = [[v for p in region for v in p]]
            elif shape["kind"] == "points":
                region = shape["points"]
                ann["keypoints"] = [v for x, y in region for v in (x, y, 2)]
                ann["num_keypoints"] = len(region)
            else:
                continue
            (x1, y1), (x2, y2) = extent(region)
            ann["bbox"], ann["area"] = [x1, y1, x2 - x1, y2 - y1], (x2 - x1) * (y2 - y1)
            anns.append(ann)
    (out / "annotations").mkdir(parents=True)
    (out / "annotations" / "person_keypoints_default.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    write_images(out / "images" / "default", expected, with_images)


def write_voc(out: Path, expected, with_images=True):
    for d in ("Annotations", "ImageSets/Main"):
        (out / d).mkdir(parents=True)
    (out / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n" + "".join(
        f"{name}:{10 * i},{20 * i},{30 * i}::\n" for i, name in enumerate(labels(expected), 1)))
    (out / "ImageSets/Main/default.txt").write_text("".join(i["file"] + "\n" for i in expected["images"]))
    for image in expected["images"]:
        objects = ""
        for shape in shapes_of(image, "rectangle", "polygon", "polyline", "rotated_rectangle"):
            (x1, y1), (x2, y2) = extent(corners(shape))
            objects += (f"<object><name>{shape['label']}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
        for shape in shapes_of(image, "tag"):
            with open(out / f"ImageSets/Main/{shape['label']}_default.txt", "a") as f:
                f.write(f"{image['file']} 1\n")
        (out / "Annotations" / (image["file"] + ".xml")).write_text(
            f"<annotation><filename>{image['file']}.png</filename><size><width>{image['width']}</width>"
            f"<height>{image['height']}</height><depth>3</depth></size>{objects}</annotation>")
    write_images(out / "JPEGImages", expected, with_images)


def yolo_lines(image, expected, mode):
    W, H, names, lines = image["width"], image["height"], labels(expected), []
    for shape in image["shapes"]:
        cls = names.index(shape["label"])
        if mode == "segment" and shape["kind"] in ("rectangle", "polygon", "rotated_rectangle"):
            lines.append(f"{cls} " + " ".join(f"{x / W:.6f} {y / H:.6f}" for x, y in corners(shape)))
        elif mode == "pose" and shape["kind"] == "points":
            (x1, y1), (x2, y2) = extent(shape["points"])
            kps = [f"{x / W:.6f} {y / H:.6f} 2" for x, y in shape["points"]]
            lines.append(f"{cls} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} "
                         f"{(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f} {' '.join(kps)}")
        elif mode == "detect" and shape["kind"] not in ("points", "tag"):
            (x1, y1), (x2, y2) = extent(corners(shape))
            lines.append(f"{cls} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} "
                         f"{(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}")
    return "".join(line + "\n" for line in lines)


def write_yolo(out: Path, expected, with_images=True, mode="detect"):
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(labels(expected)))
    extra = "kpt_shape: [2, 3]\n" if mode == "pose" else ""
    (out / "labels/default").mkdir(parents=True)
    (out / "data.yaml").write_text(f"train: images/default\nval: images/default\nnames:\n{names}\n{extra}")
    for image in expected["images"]:
        (out / "labels/default" / (image["file"] + ".txt")).write_text(yolo_lines(image, expected, mode))
    write_images(out / "images/default", expected, with_images)


def write_darknet(out: Path, expected, with_images=True):
    (out / "obj_train_data").mkdir(parents=True)
    (out / "obj.data").write_text(f"classes = {len(expected['labels'])}\ntrain = data/train.txt\n"
                                  "names = data/obj.names\nbackup = backup/\n")
    (out / "obj.names").write_text("".join(n + "\n" for n in labels(expected)))
    (out / "train.txt").write_text("".join(f"data/obj_train_data/{i['file']}.png\n" for i in expected["images"]))
    for image in expected["images"]:
        (out / "obj_train_data" / (image["file"] + ".txt")).write_text(yolo_lines(image, expected, "detect"))
    write_images(out / "obj_train_data", expected, with_images)


def write_cvat(out: Path, expected, with_images=True):
    def pts(points):
        return quoteattr(";".join(f"{x},{y}" for x, y in points))

    body = ""
    for n, image in enumerate(expected["images"]):
        body += f'<image id="{n}" name="{image["file"]}.png" width="{image["width"]}" height="{image["height"]}">'
        for s in image["shapes"]:
            label = quoteattr(s["label"])
            if s["kind"] in ("rectangle", "rotated_rectangle"):
                (x1, y1), (x2, y2) = s["points"]
                rotation = f' rotation="{s["angle"]}"' if s["kind"] == "rotated_rectangle" else ""
                body += (f'<box label={label} occluded="0" xtl="{x1}" ytl="{y1}" xbr="{x2}" ybr="{y2}"'
                         f'{rotation} z_order="0"/>')
            elif s["kind"] in ("polygon", "polyline", "points"):
                body += f'<{s["kind"]} label={label} occluded="0" points={pts(s["points"])} z_order="0"/>'
            elif s["kind"] == "tag":
                body += f"<tag label={label} source=\"manual\"/>"
        body += "</image>"
    decl = "".join(f"<label><name>{n}</name><attributes/></label>" for n in labels(expected))
    out.mkdir(parents=True)
    (out / "annotations.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version><meta><task>'
        f"<name>selftest</name><size>{len(expected['images'])}</size><mode>annotation</mode>"
        f"<labels>{decl}</labels></task></meta>{body}</annotations>")
    write_images(out / "images", expected, with_images)


def write_labelme(out: Path, expected, with_images=True):
    write_images(out, expected, with_images)
    for image in expected["images"]:
        shapes, flags = [], {}
        for group, s in enumerate(image["shapes"], 1):
            def shape(kind, points, group_id=None):
                return {"label": s["label"], "points": [list(p) for p in points], "group_id": group_id,
                        "description": "", "shape_type": kind, "flags": {}}
            if s["kind"] == "tag":
                flags[s["label"]] = True
            elif s["kind"] == "points":
                names = next(l["keypoints"] for l in expected["labels"] if l["name"] == s["label"])
                for i, p in enumerate(s["points"]):
                    point = shape("point", [p], group)
                    point["description"] = names[i] if i < len(names) else str(i + 1)
                    shapes.append(point)
            else:
                kind = {"rectangle": "rectangle", "polyline": "linestrip"}.get(s["kind"], "polygon")
                shapes.append(shape(kind, corners(s) if s["kind"] == "rotated_rectangle" else s["points"]))
        (out / (image["file"] + ".json")).write_text(json.dumps({
            "version": "5.4.1", "flags": flags, "shapes": shapes, "imagePath": image["file"] + ".png",
            "imageData": None, "imageHeight": image["height"], "imageWidth": image["width"]}))


def write_csv(out: Path, expected, with_images=True):
    out.mkdir(parents=True)
    with open(out / "annotations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "width", "height", "label", "kind", "angle", "points", "visibility", "occluded"])
        for image in expected["images"]:
            if not image["shapes"]:
                w.writerow([image["file"] + ".png", image["width"], image["height"], "", "", "", "[]", "", ""])
            for s in image["shapes"]:
                w.writerow([image["file"] + ".png", image["width"], image["height"], s["label"], s["kind"],
                            s.get("angle", ""), json.dumps(s["points"]), "", int(bool(s.get("occluded")))])
    write_images(out / "images", expected, with_images)


WRITERS = {
    "coco": write_coco, "voc": write_voc, "yolo": write_yolo, "yolo-darknet": write_darknet,
    "yolo-segment": lambda o, e, w=True: write_yolo(o, e, w, "segment"),
    "yolo-pose": lambda o, e, w=True: write_yolo(o, e, w, "pose"),
    "cvat": write_cvat, "labelme": write_labelme, "csv": write_csv,
}


def shifted(expected, kind):
    """The same annotations with the first `kind` shape moved 3 px to the right."""
    broken = copy.deepcopy(expected)
    shape = next(s for i in broken["images"] for s in i["shapes"] if s["kind"] == kind)
    shape["points"] = [[x + 3, y] for x, y in shape["points"]]
    return broken


def coco_unknown_image(out: Path):
    ann_file = out / "annotations" / "person_keypoints_default.json"
    doc = json.loads(ann_file.read_text())
    doc["annotations"][0]["image_id"] = 99
    ann_file.write_text(json.dumps(doc))


def yolo_exponent(out: Path):
    first = out / "labels/default/img-001.txt"
    first.write_text("0 5e-01 0.500000 0.100000 0.100000\n" + first.read_text())


def cvat_rotation(out: Path):
    xml = out / "annotations.xml"
    xml.write_text(xml.read_text().replace('rotation="30.0"', 'rotation="45.0"'))


def coco_keypoint_order(out: Path):
    ann_file = out / "annotations" / "person_keypoints_default.json"
    doc = json.loads(ann_file.read_text())
    next(c for c in doc["categories"] if c["keypoints"])["keypoints"].reverse()
    ann_file.write_text(json.dumps(doc))


def yolo_path(out: Path):
    config = out / "data.yaml"
    config.write_text("path: .\n" + config.read_text())


def cvat_image_subset(out: Path):
    xml = out / "annotations.xml"
    xml.write_text(xml.read_text().replace("<image id=", '<image subset="default" id='))


def coco_short_keypoints(out: Path):
    """A 2-point set in a category that declares 3 keypoints, with float flags (defect seen in
    the field: 6 values where COCO wants 9, `2.0` for `2`)."""
    ann_file = out / "annotations" / "person_keypoints_default.json"
    doc = json.loads(ann_file.read_text())
    next(c for c in doc["categories"] if c["keypoints"])["keypoints"].append("foot")
    for ann in doc["annotations"]:
        ann["keypoints"] = [float(v) for v in ann["keypoints"]]
    ann_file.write_text(json.dumps(doc))


def yolo_flat_box(out: Path):
    """A horizontal polyline exported as its 0-height box."""
    first = out / "labels/default/img-001.txt"
    first.write_text(first.read_text() + "0 0.500000 0.500000 0.300000 0.000000\n")


def labelme_reversed_rectangle(out: Path):
    doc_file = out / "img-001.json"
    doc = json.loads(doc_file.read_text())
    rect = next(s for s in doc["shapes"] if s["shape_type"] == "rectangle")
    rect["points"].reverse()
    doc_file.write_text(json.dumps(doc))


def voc_depth(out: Path):
    Image.new("L", (64, 48)).save(out / "JPEGImages" / "img-001.png")


def exif_kept(out: Path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (64, 48)).save(out / "images" / "default" / "img-001.png", exif=exif)


def cases():
    """(name, format, writer args, extra damage, with_images, should_pass, text the output must hold)"""
    for fmt in WRITERS:
        yield f"{fmt} correct", fmt, EXPECTED, None, True, True, "OK"
        kind = "points" if fmt == "yolo-pose" else "rectangle"
        yield f"{fmt} {kind} shifted 3 px", fmt, shifted(EXPECTED, kind), None, True, False, "expected"
    for fmt in ("coco", "voc", "yolo", "yolo-darknet", "cvat", "labelme"):
        yield f"{fmt} without images", fmt, EXPECTED, None, False, True, "OK"
    yield "coco without images but checked as with", "coco", EXPECTED, None, False, False, "no image file"
    yield "coco unknown image_id (datumaro only logs it)", "coco", EXPECTED, coco_unknown_image, True, False, \
        "Unknown image id"
    yield "cvat rotation 45 instead of 30", "cvat", EXPECTED, cvat_rotation, True, False, "angle 45.00"
    yield "cvat <image subset=default> in a task file (datumaro drops it)", "cvat", EXPECTED, cvat_image_subset, \
        True, False, "img-001 missing"
    yield "coco keypoint names reversed", "coco", EXPECTED, coco_keypoint_order, True, False, \
        "keypoints ['hand', 'head']"
    yield "yolo data.yaml with path: .", "yolo", EXPECTED, yolo_path, True, False, "leave it out"
    yield "yolo exponent in first line (datumaro skips the file)", "yolo", EXPECTED, yolo_exponent, True, False, \
        "img-001 missing"
    yield "coco 2 keypoints of 3, flags 2.0", "coco", EXPECTED, coco_short_keypoints, True, False, \
        "6 keypoint values for 3 keypoints"
    yield "yolo 0-height box", "yolo", EXPECTED, yolo_flat_box, True, False, "less than 1 px"
    yield "labelme rectangle bottom-right first", "labelme", EXPECTED, labelme_reversed_rectangle, True, False, \
        "top-left"
    yield "voc depth 3 for a greyscale image", "voc", EXPECTED, voc_depth, True, False, "depth 3 for a L image"
    yield "coco image keeping EXIF orientation 6", "coco", EXPECTED, exif_kept, True, False, \
        "keeps EXIF orientation 6"


def main() -> int:
    failures = 0
    with tempfile.TemporaryDirectory(prefix="formats-selftest-") as tmp:
        expected_file = Path(tmp) / "expected.json"
        expected_file.write_text(json.dumps(EXPECTED))
        for n, (name, fmt, written, damage, with_images, should_pass, needle) in enumerate(cases()):
            out = Path(tmp) / f"case{n}"
            WRITERS[fmt](out, written, with_images)
            if damage:
                damage(out)
            checked_with_images = with_images or "checked as with" in name
            cmd = [sys.executable, str(HERE / "check_export.py"), "--format", fmt, "--dir", str(out),
                   "--expected", str(expected_file)] + ([] if checked_with_images else ["--no-images"])
            run = subprocess.run(cmd, capture_output=True, text=True)
            output = run.stdout + run.stderr
            ok = (run.returncode == 0) == should_pass and needle in output
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name}: exit {run.returncode}")
            if not ok or "-v" in sys.argv:
                print("      " + output.strip().replace("\n", "\n      "))
    print(f"selftest: {'all cases behaved' if not failures else f'{failures} case(s) misbehaved'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
