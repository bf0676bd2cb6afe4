"""A database or broker URL's password never appears in what skutag prints: messages, logs, --json."""

from __future__ import annotations

import logging

import pytest

from skutag.cli import main
from skutag.redact import RedactingFilter, redact, redact_json

SECRET = "S3cretPW"


@pytest.mark.parametrize("argv", [
    ["taxonomy", "export", "-", "--db", f"postgresql://postgres:{SECRET}@127.0.0.1:1/nope"],
    ["brands", "export", "-", "--db", f"mysql://shop:{SECRET}@db.example/skutag"],
    ["taxonomy", "export", "-", "--db", f"postgresql+psycopg://postgres:{SECRET}@[::1/x"],
])
def test_cli_errors_about_a_database_never_show_its_password(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and "error" in err
    assert SECRET not in out + err and "***" in err


def test_logs_and_json_are_redacted(caplog):
    logger = logging.getLogger("skutag.test-redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("broker %s unreachable", f"amqp://guest:{SECRET}@mq:5672//")
        try:
            raise ConnectionError(f"cannot reach redis://:{SECRET}@cache:6379/0")
        except ConnectionError:
            logger.exception("failed")
    text = caplog.text
    assert SECRET not in text and "amqp://guest:***@mq:5672//" in text
    assert redact_json({"db": [f"postgresql://a:{SECRET}@h/d"], "n": 3}) == {"db": ["postgresql://a:***@h/d"], "n": 3}
    assert redact("sqlite:////tmp/x.db and http://host/path") == "sqlite:////tmp/x.db and http://host/path"
