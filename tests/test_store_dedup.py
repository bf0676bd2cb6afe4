"""Duplicate detection on real GroceryStore photos: exact content hashes and perceptual hashes that
survive resizing / re-encoding but keep different photos apart."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image
from service_fixtures import grocery_root, reencode  # noqa: F401

from skutag.store.dedup import PerceptualIndex, fingerprint, hamming, to_signed
from skutag.vision.image import ImageDecodeError, ImageLimits, ImageTooLargeError, load_image


@pytest.fixture(scope="module")
def photos(grocery_root):  # noqa: F811
    folders = ["Fruit/Banana", "Fruit/Lemon", "Vegetables/Carrots", "Packages/Oat-Milk", "Packages/Juice",
               "Fruit/Melon"]
    paths = []
    for folder in folders:
        paths += sorted((grocery_root / "images" / "val" / folder).rglob("*.jpg"))[:2]
    return paths


def test_fingerprint_keeps_sha256_md5_size_and_format(photos):
    data = photos[0].read_bytes()
    fp = fingerprint(data)
    assert fp.sha256 == hashlib.sha256(data).hexdigest() and fp.md5 == hashlib.md5(data).hexdigest()
    assert (fp.width, fp.height, fp.size_bytes, fp.content_type) == (348, 348, len(data), "image/jpeg")
    assert -(2**63) <= fp.phash < 2**63  # fits a signed BIGINT column


def test_a_fingerprint_of_a_photo_shares_its_one_decode_and_gives_the_size_as_shown(photos, monkeypatch):
    """The service hashes an upload for its duplicate check from the ``Photo`` its tagger reads too: the same
    fingerprint as from the bytes, no decode of its own; a photo stored turned (EXIF orientation 6) gives the
    size it is shown at."""
    import skutag.vision.image as images
    from skutag.store.dedup import FINGERPRINT_NEEDS
    from skutag.vision.photo import Photo, PhotoNeeds

    decodes = []
    decode = images.decode_bytes
    monkeypatch.setattr(images, "decode_bytes", lambda *a, **k: decodes.append(a[1]) or decode(*a, **k))
    data = photos[1].read_bytes()
    photo = Photo(data, FINGERPRINT_NEEDS | PhotoNeeds.of(1024, 256) | PhotoNeeds.of(2560))
    assert fingerprint(photo) == fingerprint(data) and len(decodes) == 2
    assert photo.view(1024).size == photo.view(2560).size == (348, 348) and len(decodes) == 2
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise
    Image.new("RGB", (40, 20), (200, 30, 30)).save(turned, "JPEG", exif=exif.tobytes())
    fp = fingerprint(Photo(turned.getvalue(), FINGERPRINT_NEEDS))
    assert (fp.width, fp.height) == (20, 40)


def test_resized_and_reencoded_copies_stay_within_a_few_bits(photos):
    for path in photos:
        original = fingerprint(path.read_bytes()).phash
        for size, quality in [(256, 70), (200, 50), (600, 90)]:
            copy = fingerprint(reencode(path, size, quality)).phash
            assert hamming(original, copy) <= 4, (path.name, size, quality)
        png = io.BytesIO()
        load_image(path).save(png, format="PNG")
        assert hamming(original, fingerprint(png.getvalue()).phash) <= 2


def test_different_photos_are_far_apart(photos):
    hashes = [fingerprint(p.read_bytes()).phash for p in photos]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]]
    assert min(distances) > 6, sorted(distances)[:5]


def test_index_finds_the_near_copy_and_nothing_for_a_new_photo(photos):
    index = PerceptualIndex(max_distance=6)
    known = photos[::2]
    for image_id, path in enumerate(known):
        index.add(image_id, fingerprint(path.read_bytes()).phash)
    for image_id, path in enumerate(known):
        found = index.nearest(fingerprint(reencode(path, 220, 60)).phash)
        assert found is not None and found[0] == image_id and found[1] <= 6
    for path in photos[1::2]:
        assert index.nearest(fingerprint(path.read_bytes()).phash) is None
    assert len(index) == len(known)


def test_index_bands_guarantee_every_match_within_the_distance():
    index = PerceptualIndex(max_distance=5)
    base = to_signed(0x0123_4567_89AB_CDEF)
    index.add(1, base)
    for flips in ([0, 13, 27, 40, 63], [1, 2, 3, 4, 5], [59, 60, 61, 62, 63]):
        value = base
        for bit in flips:
            value = to_signed(value ^ (1 << bit))
        assert index.nearest(value) == (1, 5)
    assert index.nearest(to_signed(base ^ 0b111111)) is None  # 6 bits apart
    with pytest.raises(ValueError, match="max_distance"):
        PerceptualIndex(max_distance=16)


def test_bad_bytes_are_refused_with_a_clear_error(photos):
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        fingerprint(b"%PDF-1.4 this is not a photo")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        fingerprint(photos[0].read_bytes()[:2000])
    big = io.BytesIO()
    Image.new("RGB", (3000, 3000)).save(big, format="PNG")
    with pytest.raises(ImageTooLargeError):
        fingerprint(big.getvalue(), ImageLimits(max_pixels=1_000_000))
