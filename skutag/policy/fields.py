"""What a product's fields may be, checked the same way for the HTTP API, ``skutag tag``/``batch`` and workers.

Every refusal is an ``InvalidInput`` naming its field; its text (``"brand: longer than 200 characters"``) is
what the API's 422 says in ``detail``, what a catalog row error says after its line number, and what a batch
saves as the product's error. The limits are the product database's columns (``skutag.store.models``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from pathlib import Path
from typing import Any

from skutag.catalog import PATH_SEPARATOR, Product
from skutag.text.price_parse import PRICE_MAX, parse_price

PRODUCT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
ID_RULE = "must be 1-128 characters: letters, digits and . _ : - (starting with a letter or digit)"
TITLE_MAX_CHARS = 500
BRAND_MAX_CHARS = 200
PATH_MAX_LEVELS = 8
PATH_LEVEL_MAX_CHARS = 100

__all__ = ["BRAND_MAX_CHARS", "ID_RULE", "PRICE_MAX", "PRODUCT_ID_RE", "TITLE_MAX_CHARS", "InvalidInput",
           "check_brand", "check_id", "check_photo_bytes", "check_photo_file", "check_price", "check_product",
           "check_text", "check_title", "new_product_id", "normalise_path"]


class InvalidInput(ValueError):
    """A field that cannot be used; ``field`` names it, ``status`` is the HTTP status that says so."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


def check_text(field: str, value: Any, max_chars: int) -> str | None:
    """Stripped text, None when blank; text the database cannot hold (NUL, too long) is refused."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be text, got {type(value).__name__}")
    text = value.strip()
    if "\x00" in text:
        raise InvalidInput(field, "contains a NUL character")
    if len(text) > max_chars:
        raise InvalidInput(field, f"longer than {max_chars} characters")
    return text or None


def check_id(value: Any) -> str | None:
    """A product id, or None when none was given (``new_product_id`` makes one)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput("id", f"must be text, got {type(value).__name__}")
    product_id = value.strip()
    if product_id and not PRODUCT_ID_RE.match(product_id):
        raise InvalidInput("id", ID_RULE)
    return product_id or None


def new_product_id() -> str:
    return f"p-{uuid.uuid4().hex[:16]}"


def check_title(value: Any, max_chars: int = TITLE_MAX_CHARS) -> str | None:
    return check_text("title", value, max_chars)


def check_brand(value: Any) -> str | None:
    return check_text("brand", value, BRAND_MAX_CHARS)


def check_price(value: Any) -> float | None:
    """A price from a number or a shop's text (``skutag.text.price.parse_price``); None when absent."""
    try:
        return parse_price(value)
    except ValueError as exc:
        raise InvalidInput("price", str(exc)) from None


EMPTY_PHOTO = "the photo is empty (0 bytes)"


def check_photo_bytes(data: bytes | None, max_bytes: int) -> bytes | None:
    """Uploaded photo bytes; None when no photo part was sent. An empty part is an error, not "no photo"."""
    if data is None:
        return None
    if len(data) == 0:
        raise InvalidInput("image", EMPTY_PHOTO)
    if len(data) > max_bytes:
        raise InvalidInput("image", f"photo is {len(data)} bytes, over the {max_bytes}-byte limit", status=413)
    return data


def check_photo_file(path: str | os.PathLike) -> None:
    """A catalog's photo file that is there but empty is the same error as an empty upload; a missing or
    unreadable file stays the tagging's own note (the title may still be read)."""
    try:
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
    except OSError:
        return
    if empty:
        raise InvalidInput("image", EMPTY_PHOTO)


def normalise_path(path: Any) -> str:
    """``a>b >  c`` -> ``a > b > c``; empty levels, NUL characters and over-long paths are refused."""
    if not isinstance(path, str):
        raise InvalidInput("category", "must be a string like 'A > B > C'")
    if "\x00" in path:
        raise InvalidInput("category", "contains a NUL character")
    levels = [level.strip() for level in path.split(">")]
    if not path.strip() or any(not level for level in levels):
        raise InvalidInput("category", f"{path!r} is not a category path like 'A > B > C'")
    if len(levels) > PATH_MAX_LEVELS or any(len(level) > PATH_LEVEL_MAX_CHARS for level in levels):
        raise InvalidInput("category", f"at most {PATH_MAX_LEVELS} levels of at most {PATH_LEVEL_MAX_CHARS} "
                                       "characters")
    return PATH_SEPARATOR.join(levels)


def check_product(product: Product, *, max_title_chars: int = TITLE_MAX_CHARS) -> Product:
    """``product`` with its fields checked and cleaned as the API checks an upload (InvalidInput otherwise).
    Its id must already be set (a catalog row without one is named after its line)."""
    title = check_title(product.title, max_title_chars)
    brand = check_brand(product.brand)
    price = check_price(product.price)
    image = product.image
    if isinstance(image, (bytes, bytearray)):
        image = check_photo_bytes(bytes(image), max_bytes=1 << 62)
    elif image is not None:
        check_photo_file(image)
    if image is None and title is None:
        raise InvalidInput("image", "send a photo, a title, or both")
    category = normalise_path(product.category) if product.category else None
    return dataclasses.replace(product, title=title, brand=brand, price=price, image=image, category=category)
