"""The backbone's ONNX export runs in a child process when the caller has not imported torch: a server or worker
that tags through ONNX Runtime never holds torch's libraries, even on the first photo after a fresh install."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort

SCRIPT = """
import json, sys
from skutag.vision.backbones import get_backbone
from skutag.vision.export import ensure_onnx
source = get_backbone("efficientnet-lite0").resolve()
path = ensure_onnx(source, sys.argv[1])
again = ensure_onnx(source, sys.argv[1])
print(json.dumps({"path": str(path), "again": str(again), "torch": "torch" in sys.modules}))
"""


def test_export_in_a_process_without_torch_keeps_torch_out_of_it(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "cache")], capture_output=True, text=True, check=False,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False, "the export imported torch into the calling process"
    assert result["path"] == result["again"]
    session = ort.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    logits, embedding = session.run(["logits", "embedding"], {"input": np.zeros((2, 3, 224, 224), np.float32)})
    assert logits.shape == (2, 1000) and embedding.shape == (2, 1280)
    assert not list((tmp_path / "cache").rglob("*.tmp*")), "no half-written file is left behind"
