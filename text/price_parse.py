"""Reading a price as a shop writes it (``parse_price``): the input rule of the catalog, the API and the product
database. Apart from the price features (``price.py``) so that checking input does not import scikit-learn."""

from __future__ import annotations

import math
import re
from typing import Any

_PRICE_NOISE = re.compile(r"[\s¥￥$€£]|RMB|CNY|SEK|kr|元", re.IGNORECASE)
PRICE_MAX = 1e9  # the largest price a product may have (the product database's and the API's limit too)


def parse_price(value: Any) -> float | None:
    """A price as a shop writes it: a number or text like '12.50', '¥12.5', '1 299,00 kr' ('12,50' is 12.5);
    None when absent (None or blank). Anything else that is not a price from 0 to ``PRICE_MAX`` (NaN, text,
    negative) is a ValueError whose message completes "price: ...": an input price is never dropped silently."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        price = float(value)
    elif isinstance(value, str):
        number = _plain_number(_PRICE_NOISE.sub("", value))
        if number is None:
            raise ValueError(f"not a number: {value!r} is ambiguous (write 1299 or 1.299)")
        try:
            price = float(number)
        except ValueError:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"not a number: {value!r}")
    if not math.isfinite(price) or price < 0 or price > PRICE_MAX:
        raise ValueError(f"must be a number from 0 to 1e9, got {value!r}")
    return price


def _plain_number(text: str) -> str | None:
    """'1 299,00' / '1.299,00' / '1,299.00' -> '1299.00': with both separators the last one is the decimal
    point; a lone comma is a decimal comma ('12,50') unless it could as well group thousands ('1,299': None)."""
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        grouping = "." if decimal == "," else ","
        return text.replace(grouping, "").replace(decimal, ".")
    if text.count(",") == 1:
        whole, fraction = text.split(",")
        if len(fraction) == 3 and whole.strip("+-").isdigit():
            return None
        return text.replace(",", ".")
    return text.replace(",", "")  # '1,299,000'
