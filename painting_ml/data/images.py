"""The decoder contract: which image files are usable, and the one PIL conversion to RGB.

Training decodes with TensorFlow (``tf.io.decode_image``), which reads JPEG, PNG, GIF, BMP and WebP
and nothing else, recognising them by their first bytes whatever the file name. Ingest, ``predict``
and ``verify`` therefore accept exactly those formats (``unsupported_format`` otherwise: TIFF, ICO,
PPM, PSD … also behind a ``.jpg`` name), and everything that shows an image with PIL (ingest copies,
mosaics, offline augmentation) converts it with :func:`to_rgb`, which matches what TensorFlow
yields: 16-bit samples scaled to 8 bits, palette expanded, alpha dropped (the stored colour is
kept, as TensorFlow does).

What TensorFlow would decode differently is replaced by a *converted copy* that training reads
instead (``paintings.reduced_path``): a JPEG past the decompression-bomb limit (reduced with DCT
draft scaling, never decoded at full size) and a JPEG whose EXIF orientation is not upright
(TensorFlow ignores EXIF). Copies are content-addressed (sha256 of the source bytes) under a
folder per data root, so two folders, or ``predict``'s files, can never overwrite each other's.

Everything here is safe to call from many threads at once: the decompression-bomb limit is
checked against the header before any pixel is decoded, so no process-global warnings filter is
ever touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import BmpImagePlugin, GifImagePlugin, Image, ImageOps, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

#: Formats training's decoder reads, as PIL names them. MPO is a JPEG with extra frames.
TRAINABLE = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
#: Bumped when a converted copy would come out differently, so old copies are not reused.
_COPY_RECIPE = b"painting_ml copy v2"

# First bytes of formats PIL can open but training cannot, to name them in the reject detail.
_OTHER_MAGIC = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x01\x00", "ICO"),
                (b"8BPS", "PSD"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
                (b"qoif", "QOI"), (b"DDS ", "DDS"), (b"icns", "ICNS"), (b"gimp xcf", "XCF"))


@dataclass(frozen=True)
class ImageProbe:
    """What opening one image told us: either a size and mode, or why it is unusable."""

    width: int = 0
    height: int = 0
    mode: str = ""
    reason: str = ""
    detail: str = ""
    reduced_path: str | None = None
    sha256: str = ""  # of the file's bytes (exact identity)
    phash: int | None = None  # 64-bit perceptual hash of the decoded image, as a signed int64


def sniff_format(head: bytes) -> str | None:
    """The trainable format ``head`` (a file's first 16 bytes) starts with, by TensorFlow's own
    tests (``is_jpeg``, PNG/GIF/BMP/WebP signatures); None for anything else."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _other_format(head: bytes) -> str | None:
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n":
        return "PPM/PGM/PBM"
    return next((name for magic, name in _OTHER_MAGIC if head.startswith(magic)), None)


#: The PIL plugin class of each trainable format (each opens a file name lazily).
_PLUGINS: dict[str, Callable[[str], Image.Image]] = {
    "JPEG": JpegImagePlugin.JpegImageFile, "PNG": PngImagePlugin.PngImageFile, "GIF": GifImagePlugin.GifImageFile,
    "BMP": BmpImagePlugin.BmpImageFile, "WEBP": WebPImagePlugin.WebPImageFile,
}


class NotAnImage(ValueError):
    """A file with no image signature at all (text, garbage)."""


class ShortJpeg(ValueError):
    """A JPEG whose data cannot fill its declared size."""


class UnsupportedFormat(ValueError):
    """A file PIL might read but training's decoder cannot."""


def open_trainable(path: Path, strict: bool = False) -> Image.Image:
    """Open ``path`` lazily (header only; pixels on ``load()``) with the PIL plugin of its
    trainable format.

    Unlike ``Image.open`` this never emits ``DecompressionBombWarning`` (callers compare the size
    with ``Image.MAX_IMAGE_PIXELS`` themselves), so it needs no warnings filter. ``strict``: a
    JPEG whose data cannot fill its declared size fails to load (see :func:`jpeg_problem`).

    Raises:
        UnsupportedFormat: the file is another image format (TIFF, ICO, PPM ...).
        NotAnImage: the file starts with no image signature at all.
        ShortJpeg: (``strict``) the JPEG's data cannot fill its declared size.
    """
    with open(path, "rb") as f:
        head = f.read(16)
    fmt = sniff_format(head)
    if fmt is None:
        other = _other_format(head)
        if other is None:
            raise NotAnImage(f"not an image: no {', '.join(TRAINABLE)} signature")
        raise UnsupportedFormat(f"{other} is not a format training can decode ({', '.join(TRAINABLE)})")
    if fmt == "JPEG" and strict:
        data = path.read_bytes()
        problem, data = jpeg_problem(data)
        if problem:
            raise ShortJpeg(problem)
        return JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    return _PLUGINS[fmt](str(path))


def _bmp_problem(path: Path, im: Image.Image) -> str | None:
    """TensorFlow's BMP decoder reads uncompressed 24/32-bit files and 8-bit grayscale ones (it
    takes palette indices as gray levels, so a colour palette would come out wrong)."""
    with open(path, "rb") as f:
        header = f.read(34)
    if len(header) < 34 or struct.unpack_from("<I", header, 14)[0] < 40:
        return "an old OS/2 BMP header"
    bits, compression = struct.unpack_from("<HI", header, 28)
    if compression not in (0, 3):
        return f"a compressed BMP (compression {compression})"
    if bits in (24, 32) or (bits == 8 and im.mode == "L"):
        return None
    return f"a {bits}-bit {'palette ' if im.mode == 'P' else ''}BMP"


def _jpeg_frame(data: bytes) -> tuple[int, int, list[tuple[int, int]], int] | None:
    """(width, height, [(h, v) sampling per component], SOF marker) from a JPEG's frame header."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        length = struct.unpack_from(">H", data, i + 2)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 10 > len(data):
                return None
            height, width, n = struct.unpack_from(">HHB", data, i + 5)
            comps = [(data[i + 11 + 3 * k] >> 4, data[i + 11 + 3 * k] & 15) for k in range(n)
                     if i + 12 + 3 * k <= len(data)]
            return width, height, comps, marker
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def jpeg_problem(data: bytes) -> tuple[str | None, bytes]:
    """Why a JPEG's data cannot fill its declared size (or None), and the bytes to decode.

    libjpeg — in PIL and TensorFlow alike — fills whatever a JPEG's data does not cover with flat
    gray and reports success when the data ends in an end-of-image marker too early (a header
    patched to claim more pixels, a cut file with the marker re-appended). Two checks:

    * every 8×8 block of every component costs at least one bit of Huffman-coded data, so a file
      with fewer bits than blocks cannot be whole (arithmetic-coded files are not judged);
    * a sequential JPEG is decoded with its final end-of-image marker replaced by a few zero
      bytes: a whole image decodes as before, but data that runs out before the last block now
      makes PIL fail ("image file is truncated") instead of padding it with gray.
      (Progressive files need the marker to finish; they get the first check only.)
    """
    frame = _jpeg_frame(data)
    if frame is None:
        return None, data
    width, height, comps, marker = frame
    if marker >= 0xC9 or not comps:
        return None, data
    hmax, vmax = max(h for h, _ in comps) or 1, max(v for _, v in comps) or 1
    blocks = sum(math.ceil(math.ceil(width * h / hmax) / 8) * math.ceil(math.ceil(height * v / vmax) / 8)
                 for h, v in comps)
    if len(data) * 8 < blocks:
        return (f"the JPEG declares {width}x{height} ({blocks} blocks) but holds only {len(data)} bytes: "
                "its data cannot fill the image"), data
    if marker in (0xC0, 0xC1):
        end = data.rfind(b"\xff\xd9")
        if end > 0:
            data = data[:end] + b"\x00" * 8
    return None, data


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB the way training's decoder sees the same file: 16-bit and 32-bit
    integer samples scaled (not clipped) to 8 bits, float samples taken as 0–1, palette expanded,
    alpha dropped."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        a = np.clip(a, 0, 65535) / 257.0
        im = Image.fromarray(np.round(a).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
        im = Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), "L")
    elif im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA") if im.mode != "RGBA" else im
        return im.convert("RGB")  # drops alpha, keeps the stored colour (as TensorFlow does)
    return im if im.mode == "RGB" else im.convert("RGB")


#: A picture is colourless when its pixels' spread between colour channels averages under this
#: share of full scale: a grey JPEG, a black-and-white scan, an etching (sepia stays coloured).
COLOURLESS_SPREAD = 0.03


def colourless(path: str | Path, thumb: int = 64) -> bool:
    """Whether the picture at ``path`` has (almost) no colour, judged on a ``thumb``-pixel thumbnail.

    Raises:
        OSError: the file is missing or unreadable.
    """
    with Image.open(path) as im:
        im.draft("RGB", (thumb, thumb))  # JPEG: decode at reduced scale
        small = to_rgb(im)
        small.thumbnail((thumb, thumb))
        rgb = np.asarray(small, dtype=np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean()) < COLOURLESS_SPREAD * 255


def content_name(path: Path, suffix: str = ".jpg") -> str:
    """A file name from the sha256 of ``path``'s bytes (and the copy recipe)."""
    h = hashlib.sha256(_COPY_RECIPE)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:40] + suffix


def root_folder(copies_dir: Path, root: str) -> Path:
    """The folder of one data root's converted copies: ``copies_dir/<sha256(root)[:16]>``."""
    return copies_dir / hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _write_copy(img: Image.Image, dest: Path) -> None:
    """Write ``img`` as JPEG to ``dest`` atomically; the temp name is unique per thread, so two
    threads converting identical files never write one temp file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        img.save(tmp, format="JPEG", quality=92)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def probe_recipe(copies: bool) -> str:
    """What a probe's outcome depends on besides the file's bytes: the copy recipe, the pixel
    limit, whether converted copies may be written and the identity hashes. Ingest's manifest
    reuses an outcome only under the same recipe, so a manifest written without hashes is probed
    (and hashed) again."""
    return f"{_COPY_RECIPE.decode()}|max_pixels={Image.MAX_IMAGE_PIXELS}|copies={int(copies)}|{IDENTITY_RECIPE}"


#: The identity hashes a probe records: sha256 of the bytes, imagehash's 64-bit pHash.
IDENTITY_RECIPE = "identity=sha256+phash64"


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``'s bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def perceptual_hash(im: Image.Image) -> int:
    """imagehash's pHash (DCT of a 32x32 grey thumbnail, 64 bits) of ``im`` as a signed 64-bit
    integer: the bits of ``np.uint64`` viewed as ``np.int64``, so it fits PostgreSQL's bigint and
    numpy's int64 arrays without conversion (Hamming distance: popcount of the XOR)."""
    import imagehash

    bits = imagehash.phash(to_rgb(im)).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)


def _with_identity(probe: ImageProbe, path: Path, im: Image.Image, identity: bool) -> ImageProbe:
    """``probe`` of a usable file with its identity hashes (unchanged unless asked)."""
    if not identity:
        return probe
    return dataclasses.replace(probe, sha256=file_sha256(path), phash=perceptual_hash(im))


def probe_image(path: Path, draft_size: int = 256, reduced_dir: Path | None = None,
                reduce_to: int = 1024, identity: bool = False) -> ImageProbe:
    """Prove ``path`` is an image training can decode, and decode it (JPEG draft mode: cheap).

    Rejections: ``not_a_file``, ``empty_file``, ``unreadable``, ``unsupported_format`` (not
    JPEG/PNG/GIF/BMP/WebP by its bytes, or a BMP variant TensorFlow misreads), ``undecodable``
    (truncated, garbage, or a JPEG whose data cannot fill its declared size) and
    ``decompression_bomb`` (past ``Image.MAX_IMAGE_PIXELS`` and not a JPEG, or still past it at
    1/8 scale).

    A JPEG past the limit, or with a non-upright EXIF orientation, gets a converted copy in
    ``reduced_dir`` (content-addressed; long side at most ``reduce_to`` for reduced ones) whose
    path is returned as ``reduced_path``; without ``reduced_dir`` such a file is rejected.
    The size limit is compared before decoding and never changed. ``identity``: a usable probe
    also records the file's sha256 and the decoded image's perceptual hash (of the converted copy's
    image where there is one: what training sees).
    """
    try:
        if path.is_dir():
            return ImageProbe(reason="not_a_file", detail="path is a directory")
        if path.stat().st_size == 0:
            return ImageProbe(reason="empty_file", detail="0 bytes")
        with open_trainable(path, strict=True) as im:
            width, height, mode, fmt = im.width, im.height, im.mode, im.format
            if fmt == "BMP" and (problem := _bmp_problem(path, im)):
                return ImageProbe(reason="unsupported_format", detail=f"{problem}: training's decoder misreads it")
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                if fmt != "JPEG":
                    return ImageProbe(reason="decompression_bomb",
                                      detail=f"{width}x{height} is past the limit of {limit} "
                                             "pixels; only JPEGs can be loaded reduced")
                return _reduced_copy(path, im, reduced_dir, reduce_to, limit, identity)
            orientation = im.getexif().get(0x0112, 1) if fmt == "JPEG" else 1
            if orientation not in (1, None):
                return _upright_copy(path, im, reduced_dir, orientation, identity)
            im.draft("RGB", (draft_size, draft_size))  # decode at 1/2..1/8 scale: fast
            try:
                im.load()
            except OSError as exc:
                if fmt == "JPEG" and "truncated" in str(exc):
                    return ImageProbe(reason="undecodable", detail=f"the JPEG's data ends before its declared "
                                                                   f"{width}x{height} is filled ({exc})")
                raise
            return _with_identity(ImageProbe(width=width, height=height, mode=mode), path, im, identity)
    except UnsupportedFormat as exc:
        return ImageProbe(reason="unsupported_format", detail=str(exc))
    except (ShortJpeg, NotAnImage) as exc:
        return ImageProbe(reason="undecodable", detail=str(exc))
    except PermissionError as exc:
        return ImageProbe(reason="unreadable", detail=f"permission denied: {exc.filename}")
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError) as exc:
        # PIL's plugins raise all of these on truncated or garbage files.
        return ImageProbe(reason="undecodable", detail=(str(exc) or type(exc).__name__)[:200])


def _reduced_copy(path: Path, im: Image.Image, reduced_dir: Path | None, reduce_to: int,
                  limit: int, identity: bool) -> ImageProbe:
    """A JPEG past the bomb limit of ``limit`` pixels: decode with the gentlest DCT scale that
    brings it under the limit and write a reduced copy, or reject."""
    width, height, mode = im.width, im.height, im.mode
    if reduced_dir is None:
        return ImageProbe(reason="decompression_bomb", detail=f"{width}x{height} is past the limit of {limit} pixels")
    scale = next((k for k in (2, 4, 8) if math.ceil(width / k) * math.ceil(height / k) <= limit), 8)
    im.draft("RGB", (max(1, width // scale), max(1, height // scale)))
    if im.width * im.height > limit:
        return ImageProbe(reason="decompression_bomb",
                          detail=f"{width}x{height} is still {im.width}x{im.height} at 1/8 scale")
    im.load()
    small = to_rgb(ImageOps.exif_transpose(im))
    small.thumbnail((reduce_to, reduce_to))
    dest = reduced_dir / content_name(path)
    if not dest.is_file():
        _write_copy(small, dest)
    return _with_identity(ImageProbe(width=width, height=height, mode=mode, reduced_path=str(dest),
                                      detail=f"reduced from {width}x{height} with JPEG draft mode"),
                          path, small, identity)


def _upright_copy(path: Path, im: Image.Image, reduced_dir: Path | None, orientation: int,
                  identity: bool) -> ImageProbe:
    """A JPEG with an EXIF rotation: TensorFlow ignores EXIF, so training reads an upright copy."""
    mode = im.mode
    if reduced_dir is None:
        return ImageProbe(reason="unsupported_format",
                          detail=f"EXIF orientation {orientation} needs an upright copy and no copy folder was given")
    im.load()
    upright = to_rgb(ImageOps.exif_transpose(im))
    dest = reduced_dir / content_name(path)
    if not dest.is_file():
        _write_copy(upright, dest)
    return _with_identity(ImageProbe(width=upright.width, height=upright.height, mode=mode, reduced_path=str(dest),
                                     detail=f"upright copy (EXIF orientation {orientation})"),
                          path, upright, identity)


def read_rgb(path: str | Path, size: int | None = None) -> Image.Image:
    """Open any accepted image (an original or a converted copy) as RGB, EXIF orientation
    applied, optionally thumbnailed to fit ``size``×``size`` (JPEGs decoded with draft scaling)."""
    with open_trainable(Path(path)) as im:
        if size:
            im.draft("RGB", (size, size))
        im = ImageOps.exif_transpose(im)
        out = to_rgb(im)
        if size:
            out.thumbnail((size, size))
        return out
