"""Service under load (issue 18): per-upload latency with 1 and 8 concurrent clients against a real `skutag serve`
process, its peak memory, and eight concurrent uploads of a 6300 x 6300 PNG.

    .venv/bin/python bench/bench_service_load.py --model a=/tmp/bb-models/a --model b=/tmp/bb-models/b \\
        [--clients 1,8] [--n 48] [--json out.json]

For each model (NAME=BUNDLE; none given: the cold-start pipeline) one `skutag serve` process on a fresh SQLite
database, its own defaults (OCR gate as the bundle says), then:

  warm-up      3 uploads (first-call costs: sessions, exports), not counted
  huge PNGs    8 clients at once each POST a 6300 x 6300 PNG (131 KB on the wire, 119 MB decoded): the statuses
               (200, or 503 with Retry-After when the decode budget is full), the server's peak RSS during
               them and its RSS 2 s after
  clients C    C client threads upload N GroceryStore val photos between them (each photo once per server: no
               duplicate-cache hits), as fast as answers come: p50 / p95 per upload (client wall time, the
               multipart upload included), products/s over the phase's wall time, the server's peak RSS
               during the phase (VmHWM, reset before each phase through /proc/PID/clear_refs)

GroceryStore val photos are sent without titles (their titles name the class). The clients run in this process
(httpx, threads: they wait on sockets); the server is its own process, so its CPU and memory are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from bench.bench_service import GROCERY, percentile  # noqa: E402
from service_fixtures import free_port, grocery_rows, huge_png  # noqa: E402


def rss(pid: int, key: str) -> float:
    """VmRSS / VmHWM of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


class Server:
    """`skutag serve` on a fresh database, with a token for the clients."""

    def __init__(self, model: str | None, workdir: Path, name: str):
        from skutag.store import Store

        db = f"sqlite:///{workdir / (name + '.db')}"
        store = Store.open(db)
        self.token = store.create_token("bench")
        store.close()
        port = free_port()
        command = [sys.executable, "-m", "skutag", "serve", "--db", db, "--port", str(port), "--log-level", "warning"]
        if model:
            command += ["--model", model]
        self.log = (workdir / f"{name}.log").open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "SKUTAG_HOME": str(workdir / "home")})
        self.url = f"http://127.0.0.1:{port}"

    def client(self):
        import httpx

        return httpx.Client(base_url=self.url, timeout=600, headers={"Authorization": f"Bearer {self.token}"})

    def wait_ready(self) -> None:
        import httpx

        with self.client() as client:
            for _ in range(600):
                if self.process.poll() is not None:
                    raise SystemExit(f"skutag serve exited: see {self.log.name}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        raise SystemExit("skutag serve did not answer /healthz in 300 s")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def upload(client, pid: str, data: bytes, name: str, kind: str) -> tuple[int, float, dict]:
    started = time.perf_counter()
    response = client.post("/v1/products", data={"id": pid}, files={"image": (name, data, kind)})
    elapsed = time.perf_counter() - started
    return response.status_code, elapsed, (response.json() if response.status_code == 200 else {})


def huge_phase(server: Server) -> dict:
    data = huge_png()
    reset_peak(server.process.pid)
    before = rss(server.process.pid, "VmRSS")
    with server.client() as client, ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: upload(client, f"huge-{i}", data, f"h{i}.png", "image/png"), range(8)))
    peak = rss(server.process.pid, "VmHWM")
    time.sleep(2.0)
    return {"png_bytes": len(data), "statuses": sorted(code for code, _, _ in answers),
            "rss_before_mb": round(before), "peak_rss_mb": round(peak),
            "rss_after_mb": round(rss(server.process.pid, "VmRSS"))}


def clients_phase(server: Server, rows: list, clients: int, prefix: str) -> dict:
    reset_peak(server.process.pid)
    times: list[float] = []
    correct = failed = 0
    with server.client() as client, ThreadPoolExecutor(max_workers=clients) as pool:
        started = time.perf_counter()
        jobs = [pool.submit(upload, client, f"{prefix}{i}", row.image.read_bytes(), row.image.name, "image/jpeg")
                for i, row in enumerate(rows)]
        for job, row in zip(jobs, rows):
            status, elapsed, body = job.result()
            times.append(elapsed)
            failed += status != 200
            correct += body.get("path") == row.path
        wall = time.perf_counter() - started
    return {"clients": clients, "n": len(rows), "failed": failed,
            "p50_ms": round(percentile(times, 0.5) * 1000), "p95_ms": round(percentile(times, 0.95) * 1000),
            "products_per_s": round(len(rows) / wall, 2), "leaf_accuracy": round(correct / len(rows), 4),
            "peak_rss_mb": round(rss(server.process.pid, "VmHWM"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=BUNDLE",
                        help="a model bundle to serve (repeat); none: the cold-start pipeline")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--n", type=int, default=48, help="uploads per client count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not GROCERY.is_dir():
        parser.error(f"GroceryStore not found at {GROCERY}")
    counts = [int(c) for c in args.clients.split(",")]
    rows = grocery_rows(GROCERY, "val")
    random.Random(args.seed).shuffle(rows)
    if args.n * len(counts) + 3 > len(rows):
        parser.error(f"--n {args.n} x {len(counts)} client counts needs more than the {len(rows)} val photos")
    models = [tuple(m.split("=", 1)) for m in args.model] or [("cold-start", None)]
    report: dict = {"n": args.n, "clients": counts, "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench-service-load-") as tmp:
        for name, bundle in models:
            server = Server(bundle, Path(tmp), name)
            try:
                server.wait_ready()
                with server.client() as client:
                    for i, row in enumerate(rows[-3:]):
                        upload(client, f"warm-{i}", row.image.read_bytes(), row.image.name, "image/jpeg")
                result = {"bundle": bundle, "huge_png": huge_phase(server)}
                print(f"[{name}] huge PNGs: {json.dumps(result['huge_png'])}", flush=True)
                for k, clients in enumerate(counts):
                    phase = clients_phase(server, rows[k * args.n:(k + 1) * args.n], clients, f"c{clients}-")
                    result[f"clients_{clients}"] = phase
                    print(f"[{name}] {json.dumps(phase)}", flush=True)
                report["models"][name] = result
            finally:
                server.close()
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
