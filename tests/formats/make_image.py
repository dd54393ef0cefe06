"""Write one test image the Rust cluster tests upload: a given stored size, PIL mode, format
and EXIF orientation, with a gradient so that encoders keep the pixels distinct.

    python make_image.py OUT --size 40x30 --mode RGB --format jpeg --orientation 6
"""

from __future__ import annotations

import argparse

from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--size", default="40x30", help="stored width x height")
    parser.add_argument("--mode", default="RGB", choices=["L", "LA", "RGB", "RGBA"])
    parser.add_argument("--format", default="png", choices=["png", "jpeg"])
    parser.add_argument("--orientation", type=int, default=0, help="EXIF orientation 1-8 (JPEG)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    image = Image.new(args.mode, (width, height))
    bands = len(args.mode)
    image.putdata([tuple((x * 5 + y * 3 + b * 40) % 256 for b in range(bands)) if bands > 1
                   else (x * 5 + y * 3) % 256 for y in range(height) for x in range(width)])
    options = {}
    if args.orientation:
        exif = Image.Exif()
        exif[0x0112] = args.orientation
        options["exif"] = exif
    image.save(args.out, format=args.format.upper(), **options)


if __name__ == "__main__":
    main()
