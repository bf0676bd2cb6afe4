"""Fuzz the HTTP API from its own OpenAPI document (schemathesis + Hypothesis): every operation gets
``examples`` generated requests; each response is checked for a 5xx, an undocumented status code, content
type or body schema.

    python -m bench.fuzz_api --examples 30 --db sqlite --json
    python -m bench.fuzz_api --examples 30 --db postgresql://postgres@127.0.0.1:5432/test --json

The suite runs the same function with a few examples per operation (tests/test_service_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# operations that train a model per request: exercised by their own tests, too slow to fuzz
SLOW_OPERATIONS = ("POST /v1/models:retrain",)


@dataclass
class FuzzReport:
    requests: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    operations: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"requests": self.requests, "server_errors": self.server_errors,
                "schema_violations": self.schema_violations, "operations": self.operations,
                "statuses": dict(sorted(self.statuses.items())),
                "failures": self.failures[:50]}


def fuzz_app(app, headers: dict[str, str], examples: int, *, seed: int = 0) -> FuzzReport:
    """Run the checks against ``app`` (an ASGI app serving /openapi.json) with ``headers`` on every request."""
    import schemathesis
    from hypothesis import HealthCheck, given, seed as fix_seed, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in SLOW_OPERATIONS:
            continue
        report.operations += 1

        @fix_seed(seed)
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            report.requests += 1
            response = case.call(headers=headers)
            report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                report.server_errors += 1
                report.failures.append(f"{label}: {response.status_code} {response.text[:200]}")
                return
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except Exception as exc:  # noqa: BLE001 - schemathesis raises a group of check failures
                report.schema_violations += 1
                report.failures.append(f"{label}: {' '.join(str(exc).split())[:300]}")

        run()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=30)
    parser.add_argument("--db", default="sqlite", help="'sqlite' (a temporary file) or a database URL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from fastapi.testclient import TestClient

    from skutag.service.app import create_app
    from skutag.service.config import ServiceConfig

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'fuzz.db'}" if args.db == "sqlite" else args.db
        app = create_app(ServiceConfig(db_url=url, bundles_dir=str(Path(tmp) / "bundles"), max_batch=4))
        headers = {"Authorization": f"Bearer {app.state.store.create_token('fuzz')}"}
        with TestClient(app):
            report = fuzz_app(app, headers, args.examples)
        app.state.store.close()
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(f"{report.operations} operations, {report.requests} requests, {report.server_errors} 5xx, "
              f"{report.schema_violations} schema violations")
        for line in report.failures[:20]:
            print("  " + line)
    return 1 if report.server_errors or report.schema_violations else 0


if __name__ == "__main__":
    sys.exit(main())
