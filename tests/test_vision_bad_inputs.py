"""Every kind of bad or unusual photo: bad ones get a clear per-image error, odd-but-valid ones are
classified, and the rest of the batch always completes."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skutag import vision
from skutag.vision.image import load_image
from vision_support import retail_photo

BEER_BOTTLE = 440


@pytest.fixture(scope="module")
def model():
    return vision.load_model()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(retail_photo(BEER_BOTTLE)).convert("RGB")


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb() -> bytes:
    """A tiny PNG whose header claims 100,000 x 100,000 pixels."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def exif_rotated(image: Image.Image) -> bytes:
    """The photo stored sideways with EXIF orientation 6 (display rotated 90° clockwise)."""
    stored = image.transpose(Image.Transpose.ROTATE_90)  # what a phone writes
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(stored, "JPEG", quality=92, exif=exif.tobytes())


def sixteen_bit(image: Image.Image) -> bytes:
    gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    wide = Image.fromarray(gray)
    assert wide.mode == "I;16"
    encoded = _encode(wide, "PNG")
    assert Image.open(io.BytesIO(encoded)).mode in ("I;16", "I")
    return encoded


def rgba(image: Image.Image) -> bytes:
    with_alpha = image.convert("RGBA")
    alpha = np.full(image.size[::-1], 255, dtype=np.uint8)
    alpha[:20, :20] = 0  # a transparent corner
    with_alpha.putalpha(Image.fromarray(alpha))
    return _encode(with_alpha, "PNG")


def bad_cases(photo: Image.Image, tmp_path: Path) -> dict[str, tuple[object, str]]:
    """name -> (source, words the error must contain)."""
    jpeg = _encode(photo, "JPEG", quality=90)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    return {
        "garbage after a jpeg marker": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "not a recognised image"),
        "corrupt jpeg data": (jpeg[: len(jpeg) // 3] + b"\xff" * 2000 + jpeg[len(jpeg) // 3 + 2000 :], "corrupt"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated"),
        "non-image file": (str(text), "not a recognised image"),
        "zero-size file": (str(empty), "empty"),
        "zero-size array": (np.zeros((0, 0, 3), dtype=np.uint8), "zero-size"),
        "decompression bomb": (decompression_bomb(), "pixel"),
        "missing file": (str(tmp_path / "nope.jpg"), "no such image file"),
    }


def good_cases(photo: Image.Image) -> dict[str, object]:
    return {
        "jpeg bytes": _encode(photo, "JPEG", quality=90),
        "cmyk jpeg": _encode(photo.convert("CMYK"), "JPEG", quality=90),
        "palette png": _encode(photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
        "rgba png": rgba(photo),
        "16-bit png": sixteen_bit(photo),
        "grayscale jpeg": _encode(photo.convert("L"), "JPEG", quality=90),
        "exif rotated": exif_rotated(photo),
        "pil image": photo,
        "numpy array": np.asarray(photo),
    }


def test_one_batch_with_every_case_completes(model, photo, tmp_path):
    bad = bad_cases(photo, tmp_path)
    good = good_cases(photo)
    names = list(bad) + list(good)
    sources = [bad[n][0] for n in bad] + list(good.values())
    # interleave so that bad photos sit between good ones inside the same forward batches
    order = [i for pair in zip(range(len(bad)), range(len(bad), len(names))) for i in pair]
    order += [i for i in range(len(names)) if i not in order]
    results = model.predict([sources[i] for i in order], top_k=5, batch_size=8)
    assert len(results) == len(names)
    by_name = {names[i]: result for i, result in zip(order, results)}
    for name, (_source, words) in bad.items():
        result = by_name[name]
        assert result.error and words in result.error.lower(), (name, result.error)
        assert result.top_k == () and result.embedding is None
        assert result.to_json()["error"] == result.error
    for name in good:
        result = by_name[name]
        assert result.error is None, (name, result.error)
        assert len(result.top_k) == 5 and result.embedding.shape == (1280,)


def test_colour_and_format_variants_keep_the_class(model, photo):
    good = good_cases(photo)
    keep_colour = ["jpeg bytes", "cmyk jpeg", "palette png", "rgba png", "pil image", "numpy array", "exif rotated"]
    results = model.predict([good[name] for name in keep_colour], top_k=5)
    reference = results[0]
    assert BEER_BOTTLE in [s.index for s in reference.top_k]
    for name, result in zip(keep_colour, results):
        assert BEER_BOTTLE in [s.index for s in result.top_k], name
        assert float(result.embedding @ reference.embedding) > 0.8, name


def test_exif_orientation_is_applied(model, photo):
    rotated_file, upright = model.predict([exif_rotated(photo), _encode(photo, "JPEG", quality=92)])
    ignored = model.predict_one(photo.transpose(Image.Transpose.ROTATE_90))  # the sideways pixels as stored
    # the EXIF-rotated file must look like the upright photo, not like its sideways pixels
    assert float(rotated_file.embedding @ upright.embedding) > 0.98
    assert float(rotated_file.embedding @ upright.embedding) > float(ignored.embedding @ upright.embedding)


def test_all_bad_batch_returns_errors_without_running_the_network(model, photo, tmp_path):
    bad = bad_cases(photo, tmp_path)
    results = model.predict([source for source, _ in bad.values()])
    assert [r.ok for r in results] == [False] * len(bad)


def test_empty_input_gives_empty_output(model):
    assert model.predict([]) == []


def test_big_jpeg_decoded_at_reduced_scale_gives_the_same_answer(model, photo):
    big = photo.resize((photo.width * 8, photo.height * 8), Image.Resampling.BICUBIC)
    data = _encode(big, "JPEG", quality=90)
    shrunk = load_image(data, min_side=256)
    assert min(shrunk.size) >= 256 and shrunk.width < big.width  # DCT-scaled decode really happened
    assert load_image(data).size == big.size  # default: full size (what OCR needs)
    reduced, full = model.predict([data, Image.open(io.BytesIO(data))])  # a PIL image is used as given
    assert reduced.top_k[0].index == full.top_k[0].index == BEER_BOTTLE
    assert float(reduced.embedding @ full.embedding) > 0.97
