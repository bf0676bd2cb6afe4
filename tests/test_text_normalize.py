"""Title normalisation: Unicode junk, full-width text, units and pack specs, promo noise."""

from __future__ import annotations

import math

import pytest

from skutag.text import normalize_title, parse_pack_spec
from skutag.text.normalize import NormalizeOptions


@pytest.mark.parametrize(
    "raw, expected",
    [
        # full-width letters, digits, punctuation and spaces -> half-width, lower case
        ("ＮＯＮＧＦＵ　ＳＰＲＩＮＧ　农夫山泉５５０ｍｌ", "nongfu spring 农夫山泉550ml"),
        # zero-width space / joiner, BOM, bidi mark, emoji with skin tone and variation selector, control chars
        ("\ufeff可口\u200b可乐\u200d👍🏽 雪碧\u2764\ufe0f\u200e\x07 330ml", "可口可乐 雪碧 330ml"),
        ("tab\there\nnew line\r\n\x00end", "tab here new line end"),
        ("\ue000私有区\U0010fffd字符", "私有区字符"),
        # units: spacing, case, Chinese unit names, compatibility characters
        ("怡宝 纯净水 555 ML", "怡宝 纯净水 555ml"),
        ("雀巢 咖啡 1.5升 2 公斤 ㎏", "雀巢 咖啡 1.5l 2kg kg"),
        ("薯片 500克*2", "薯片 500g×2"),
        ("牛奶 250mlx24盒", "牛奶 250ml×24盒"),
        ("整箱 24 瓶 装", "整箱 24瓶 装"),
        ("手机 3500 mAh 64 GB", "手机 3500mah 64gb"),
        ("mlb 棒球帽", "mlb 棒球帽"),  # 'ml' inside a Latin word is not a unit
        # promo noise
        ("【亏本冲量五十套包邮】清香型铁观音礼盒装", "清香型铁观音礼盒装"),
        ("【官方旗舰店】安踏 跑鞋 限时特惠 包邮", "安踏 跑鞋"),
        ("【新款】连衣裙 [韩版] 正品保证", "新款 连衣裙 韩版"),  # brackets without promo keep their words
        ("", ""),
        ("   \u200b  ", ""),
    ],
)
def test_normalize_title(raw, expected):
    assert normalize_title(raw) == expected


def test_missing_and_non_text_titles():
    assert normalize_title(None) == ""
    assert normalize_title(math.nan) == ""
    assert normalize_title(12345) == "12345"


def test_options_keep_promo_and_case():
    options = NormalizeOptions(lowercase=False, drop_promo=False)
    assert normalize_title("【包邮】Nike 跑鞋", options) == "包邮 Nike 跑鞋"


def test_normalisation_is_idempotent():
    for raw in ("ＮＯＮＧＦＵ 550 ML*24 瓶【包邮】", "可口\u200b可乐 330ml×6罐", "薯片 500克*2"):
        once = normalize_title(raw)
        assert normalize_title(once) == once


@pytest.mark.parametrize(
    "raw, volume, weight, count",
    [
        ("农夫山泉 饮用天然水 550ML*24瓶 整箱", 13200.0, None, 24),
        ("薯片 500克×2", None, 1000.0, 2),
        ("大米 5kg", None, 5000.0, None),
        ("可口可乐 330ml 6罐", 330.0, None, 6),
        ("红枣 2斤", None, 1000.0, None),
        ("T恤 男 纯棉", None, None, None),
        (None, None, None, None),
    ],
)
def test_pack_spec(raw, volume, weight, count):
    spec = parse_pack_spec(raw)
    assert (spec.volume_ml, spec.weight_g, spec.count) == (volume, weight, count)
    assert set(spec.to_json()) == {"volume_ml", "weight_g", "count"}
