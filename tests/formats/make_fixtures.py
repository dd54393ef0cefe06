"""Generate the files the import tests upload, and say what importing each must give.

Fixtures are never committed: the Rust tests run

    python make_fixtures.py OUT_DIR

into a temporary directory and read the JSON manifest this prints on stdout. Each manifest
entry names a file and either the images importing it must yield ("expect": "images") or the
refusal it must meet ("expect": "refuse", with a "reason" keyword the error should contain).
Archive members that must be skipped are listed under "skipped" with their reason.

Everything is made here from scratch with Pillow, ffmpeg, zipfile and tarfile (tar.zst with
the zstandard module if installed, else the zstd command), deterministically, in a few seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import time
import zlib
from pathlib import Path

from PIL import Image

FIXED_TIME = (2024, 1, 1, 0, 0, 0)  # zip entry times, so output is byte-for-byte repeatable


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    """A small picture unlike every other seed's: a colour field with seeded noise."""
    rng = random.Random(seed)
    base = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    noise = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    return Image.blend(base, noise, 0.3)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, FIXED_TIME), data, compress_type=method)
    return out.getvalue()


def tar_bytes(members: dict[str, bytes], gz: bool = False) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1704067200
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue(), mtime=0) if gz else out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class Fixtures:
    def __init__(self, out: Path):
        self.out = out
        self.manifest: list[dict] = []

    def add(self, name: str, data: bytes, kind: str, **expectation) -> None:
        (self.out / name).write_bytes(data)
        self.record(name, kind, **expectation)

    def record(self, name: str, kind: str, **expectation) -> None:
        data = (self.out / name).read_bytes() if (self.out / name).stat().st_size < 64 << 20 else None
        entry = {"file": name, "kind": kind, "size": (self.out / name).stat().st_size}
        if data is not None:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry.update(expectation)
        self.manifest.append(entry)


def images(fx: Fixtures) -> None:
    """One file per image type, each a different picture; an EXIF-rotated JPEG; a duplicate."""
    size = (48, 32)
    formats = [("photo.jpg", "JPEG", {"quality": 90}), ("photo.png", "PNG", {}),
               ("photo.webp", "WEBP", {"lossless": True}), ("photo.bmp", "BMP", {}),
               ("photo.tiff", "TIFF", {})]
    for seed, (name, fmt, options) in enumerate(formats, 1):
        fx.add(name, encode(picture(seed, size), fmt, **options), "image", expect="images",
               images=[{"name": name, "width": size[0], "height": size[1]}])
    frames = [picture(10, size), picture(11, size)]
    fx.add("anim.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
           "image", expect="images", frames=2, images=[{"name": "anim.gif", "width": 48, "height": 32}],
           note="animated GIF (2 frames): one image, the first frame")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    fx.add("rotated.jpg", encode(picture(12, (40, 30)), "JPEG", exif=exif.tobytes()), "image",
           expect="images", images=[{"name": "rotated.jpg", "width": 30, "height": 40}],
           stored_size=[40, 30], note="EXIF Orientation=6: stored 40x30, displayed 30x40")
    shutil.copyfile(fx.out / "photo.png", fx.out / "photo-copy.png")
    fx.record("photo-copy.png", "image", expect="images", duplicate_of="photo.png",
              images=[{"name": "photo-copy.png", "width": 48, "height": 32}],
              note="same bytes as photo.png: stored once")


def archives(fx: Fixtures) -> None:
    """The same folder tree as zip, tar, tar.gz and tar.zst, with a nested tar.gz and a text file."""
    size = (40, 24)
    members = {
        "cam1/a.jpg": encode(picture(20, size), "JPEG"),
        "cam1/c.webp": encode(picture(21, size), "WEBP", lossless=True),
        "cam2/b.png": encode(picture(22, size), "PNG"),
        "cam2/night/d.bmp": encode(picture(23, size), "BMP"),
        "inner.tar.gz": tar_bytes({"e.jpg": encode(picture(24, size), "JPEG"),
                                   "sub/f.png": encode(picture(25, size), "PNG")}, gz=True),
        "README.txt": b"not an image\n",
    }
    names = ["cam1/a.jpg", "cam1/c.webp", "cam2/b.png", "cam2/night/d.bmp", "inner.tar.gz/e.jpg",
             "inner.tar.gz/sub/f.png"]
    expectation = dict(expect="images", images=[{"name": n, "width": size[0], "height": size[1]} for n in names],
                       skipped=[{"name": "README.txt", "reason": "not an image"}],
                       note="image names are paths inside the archive; a nested archive's name is a folder")
    fx.add("mixed.zip", zip_bytes(members), "archive", **expectation)
    fx.add("mixed.tar", tar_bytes(members), "archive", **expectation)
    fx.add("mixed.tar.gz", tar_bytes(members, gz=True), "archive", **expectation)
    plain = tar_bytes(members)
    if importlib.util.find_spec("zstandard"):
        import zstandard

        fx.add("mixed.tar.zst", zstandard.ZstdCompressor().compress(plain), "archive",
               compressor="zstandard module", **expectation)
    elif shutil.which("zstd"):
        fx.add("mixed.tar.zst", subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True,
                                               check=True).stdout, "archive", compressor="zstd CLI", **expectation)
    else:
        fx.manifest.append({"file": "mixed.tar.zst", "kind": "archive", "expect": "absent",
                            "note": "not generated: neither the zstandard module nor the zstd command is available"})


def media(fx: Fixtures) -> None:
    """A 2 s, 10 fps, 64x48 test clip as MP4 and WebM (frames at 1 fps), a 2-page PDF."""
    for name, codec in (("clip.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
                        ("clip.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"])):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", "testsrc=size=64x48:rate=10:duration=2", *codec, "-an", "-fflags", "+bitexact",
                        "-flags:v", "+bitexact", str(fx.out / name)],
                       check=True)
        fx.record(name, "video", expect="images", duration_s=2, fps=10, sample_fps=1, frame_count=2,
                  images=[{"name": f"{name}#{i}", "width": 64, "height": 48} for i in range(2)],
                  note="frames sampled at 1 fps; frame naming <file>#<index> to be confirmed")
    pages = [picture(30, (200, 100)), picture(31, (100, 150))]
    fx.add("doc.pdf", encode(pages[0], "PDF", save_all=True, append_images=pages[1:], resolution=72.0,
                             creationDate=time.gmtime(1704067200), modDate=time.gmtime(1704067200)),
           "document", expect="images", page_count=2,
           images=[{"name": "doc.pdf#1", "page_points": [200, 100]}, {"name": "doc.pdf#2", "page_points": [100, 150]}],
           note="page sizes in PDF points; rendered pixels = points * dpi / 72")


def office(fx: Fixtures) -> None:
    """Minimal valid OpenDocument text and Word documents with embedded pictures."""
    p1, p2 = encode(picture(40, (36, 20)), "PNG"), encode(picture(41, (20, 36)), "JPEG")
    frame = ('<draw:frame svg:width="2cm" svg:height="1cm"><draw:image xlink:href="{}" xlink:type="simple"/>'
             '</draw:frame>')
    content = ('<?xml version="1.0" encoding="UTF-8"?>'
               '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
               'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
               'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
               'xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.2"><office:body><office:text>'
               f'<text:p>{frame.format("Pictures/p1.png")}{frame.format("Pictures/p2.jpg")}</text:p>'
               '</office:text></office:body></office:document-content>')
    manifest = ('<?xml version="1.0" encoding="UTF-8"?>'
                '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
                'manifest:version="1.2">'
                '<manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.text"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                '<manifest:file-entry manifest:full-path="Pictures/p1.png" manifest:media-type="image/png"/>'
                '<manifest:file-entry manifest:full-path="Pictures/p2.jpg" manifest:media-type="image/jpeg"/>'
                '</manifest:manifest>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        # OpenDocument: 'mimetype' first, stored uncompressed, no extra field.
        z.writestr(zipfile.ZipInfo("mimetype", FIXED_TIME), "application/vnd.oasis.opendocument.text",
                   compress_type=zipfile.ZIP_STORED)
        for name, data in (("META-INF/manifest.xml", manifest), ("content.xml", content),
                           ("Pictures/p1.png", p1), ("Pictures/p2.jpg", p2)):
            z.writestr(zipfile.ZipInfo(name, FIXED_TIME), data, compress_type=zipfile.ZIP_DEFLATED)
    fx.add("doc.odt", out.getvalue(), "document", expect="images",
           images=[{"name": "doc.odt#Pictures/p1.png", "width": 36, "height": 20},
                   {"name": "doc.odt#Pictures/p2.jpg", "width": 20, "height": 36}])

    image1 = encode(picture(42, (30, 30)), "PNG")
    ns = ('xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
          'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
          'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
          'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
          'xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture"')
    document = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {ns}><w:body><w:p><w:r>'
                '<w:drawing><wp:inline><wp:extent cx="285750" cy="285750"/><wp:docPr id="1" name="image1"/>'
                '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture">'
                '<pic:pic><pic:nvPicPr><pic:cNvPr id="0" name="image1.png"/><pic:cNvPicPr/></pic:nvPicPr>'
                '<pic:blipFill><a:blip r:embed="rId1"/><a:stretch><a:fillRect/></a:stretch></pic:blipFill>'
                '<pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="285750" cy="285750"/></a:xfrm>'
                '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></pic:spPr></pic:pic>'
                '</a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p></w:body></w:document>')
    rels = "http://schemas.openxmlformats.org/package/2006/relationships"
    office_rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    members = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Default Extension="png" ContentType="image/png"/>'
            '<Override PartName="/word/document.xml" ContentType='
            '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'),
        "_rels/.rels": (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{rels}">'
                        f'<Relationship Id="rId1" Type="{office_rel}/officeDocument" Target="word/document.xml"/>'
                        '</Relationships>'),
        "word/document.xml": document,
        "word/_rels/document.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{rels}">'
            f'<Relationship Id="rId1" Type="{office_rel}/image" Target="media/image1.png"/></Relationships>'),
        "word/media/image1.png": image1,
    }
    fx.add("doc.docx", zip_bytes(members), "document", expect="images",
           images=[{"name": "doc.docx#word/media/image1.png", "width": 30, "height": 30}])


def patch_encrypted(data: bytes) -> bytes:
    """Set bit 0 (encrypted) of the general-purpose flags in every local and central header."""
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        local_offsets = [info.header_offset for info in z.infolist()]
    for offset in local_offsets:
        assert buf[offset:offset + 4] == b"PK\x03\x04"
        buf[offset + 6] |= 0x01
    central = data.index(b"PK\x01\x02")
    while central != -1:
        buf[central + 8] |= 0x01
        central = data.find(b"PK\x01\x02", central + 46)
    return bytes(buf)


def hostile(fx: Fixtures) -> None:
    """Files an importer must refuse (or, for archive members, skip) without harm."""
    png = encode(picture(50, (16, 16)), "PNG")

    bomb_size = (2 << 30) - (1 << 20)  # 2 GiB less 1 MiB: just under the zip64 threshold
    chunk = bytes(1 << 20)
    entry = zipfile.ZipInfo("zeros.png", FIXED_TIME)
    entry.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(fx.out / "bomb.zip", "w") as z:
        with z.open(entry, "w") as f:
            for _ in range(bomb_size // len(chunk)):
                f.write(chunk)
    fx.record("bomb.zip", "hostile", expect="refuse", reason="ratio", uncompressed_size=bomb_size,
              note="one deflated entry of zeros, compression ratio about 1000:1")

    fx.add("traversal.zip", zip_bytes({"../../evil.png": png, "/abs.png": png}), "hostile",
           expect="refuse", reason="traversal", note="entries ../../evil.png and /abs.png, valid PNGs; "
           "nothing may be written outside the extraction directory")

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        link = tarfile.TarInfo("passwd.png")
        link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "/etc/passwd", 1704067200
        t.addfile(link)
        ok = tarfile.TarInfo("ok.png")
        ok.size, ok.mtime = len(png), 1704067200
        t.addfile(ok, io.BytesIO(png))
    fx.add("symlink.tar", out.getvalue(), "hostile", expect="images", reason="symlink",
           images=[{"name": "ok.png", "width": 16, "height": 16}],
           skipped=[{"name": "passwd.png", "reason": "symlink"}],
           note="the symlink must never be followed; refusing the whole archive (reason symlink) is also acceptable")

    fx.add("encrypted.zip", patch_encrypted(zip_bytes({"secret.png": png})), "hostile", expect="refuse",
           reason="encrypted", note="a normal entry with the encryption flag set in local and central headers")

    full = encode(picture(51, (64, 64)), "PNG")
    fx.add("corrupt.png", full[:60], "hostile", expect="refuse", reason="corrupt",
           note="valid signature and IHDR, image data cut off")

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    partial = zlib.compress(bytes(4096))[:16]  # the start of a stream, never finished
    fx.add("huge.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", partial)
           + png_chunk(b"IEND", b""), "hostile", expect="refuse", reason="dimensions",
           declared_size=[60000, 60000], note="must be refused from the header, never decoded")

    inner = zip_bytes({"deep.png": png})
    for level in (5, 4, 3, 2):
        inner = zip_bytes({f"level{level}.zip": inner})
    fx.add("nested-deep.zip", inner, "hostile", expect="refuse", reason="depth", zip_levels=5,
           note="zip in zip (5 zips deep), an image at the bottom")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    fx = Fixtures(out)
    for make in (images, archives, media, office, hostile):
        make(fx)
    json.dump({"fixtures": fx.manifest}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
