"""``skutag serve`` (HTTP API + review dashboard), ``skutag token create|revoke``,
``skutag operator add/remove``, ``skutag db upgrade``."""

from __future__ import annotations

import argparse
import getpass
import sys

from skutag.cli import UserFacingError
from skutag.commands.flags import load_config
from skutag.redact import redact, redacted_url


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the HTTP API and the review dashboard",
        description="Serve POST /v1/products (multipart image/title/price/id), the review dashboard at / and the "
                    "OpenAPI schema at /openapi.json. The database is migrated on startup.")
    serve.add_argument("--host", help="interface to listen on (default: service.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: service.port, 8000)")
    serve.add_argument("--db", help="database URL: sqlite:///FILE or postgresql://user@host/db "
                                    "(default: $SKUTAG_HOME/skutag.db)")
    serve.add_argument("--model", help="model bundle folder to serve (default: the database's active version, "
                                       "else the cold-start pipeline)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(func=run_serve)

    token = subparsers.add_parser("token", help="API tokens for the HTTP API")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_sub.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--name", default="default", help="who or what uses it (kept with the token)")
    create.add_argument("--db", help="database URL (default: service.db_url)")
    create.set_defaults(func=run_token_create)
    revoke = token_sub.add_parser("revoke", help="revoke every token with this name")
    revoke.add_argument("name")
    revoke.add_argument("--db", help="database URL (default: service.db_url)")
    revoke.set_defaults(func=run_token_revoke)

    operator = subparsers.add_parser("operator", help="review-dashboard logins")
    operator_sub = operator.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    add = operator_sub.add_parser("add", help="create an operator or set their password")
    add.add_argument("username")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    add.add_argument("--db", help="database URL (default: service.db_url)")
    add.set_defaults(func=run_operator_add)
    remove = operator_sub.add_parser("remove", help="delete an operator; their dashboard sessions end")
    remove.add_argument("username")
    remove.add_argument("--db", help="database URL (default: service.db_url)")
    remove.set_defaults(func=run_operator_remove)

    db = subparsers.add_parser("db", help="the product database")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply the schema migrations (the service also does it on start)")
    upgrade.add_argument("--db", help="database URL (default: service.db_url)")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(func=run_db_upgrade)


SERVICE_FLAGS = {"service.host": "host", "service.port": "port", "service.db_url": "db", "service.model_dir": "model"}


def _config(args: argparse.Namespace):
    return load_config(args, SERVICE_FLAGS)


def describe_database(url) -> str:
    """Which database a command uses: a SQLite file by its absolute path (a relative ``sqlite:///x.db`` is
    relative to the working directory), any other by its URL without the password."""
    from pathlib import Path

    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database).expanduser().resolve()
        return f"SQLite file {path}" + ("" if Path(url.database).is_absolute() else " (relative to this folder)")
    return url.render_as_string(hide_password=True)


def _store(args: argparse.Namespace):
    from sqlalchemy.exc import OperationalError

    from skutag.store import DatabaseUrlError, Store

    url = _config(args).service.db_url or None
    try:
        return Store.open(url)
    except DatabaseUrlError as exc:
        raise UserFacingError(str(exc)) from None
    except OperationalError as exc:
        raise UserFacingError(f"cannot open the database {redacted_url(url) if url else '(default SQLite)'}: "
                              f"{redact(exc.orig)}") from None


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pathlib import Path

    config = _config(args)
    settings = config.service
    if settings.model_dir and not Path(settings.model_dir).is_dir():
        raise UserFacingError(f"--model: no such model folder: {settings.model_dir}")
    from skutag.service.app import create_app

    store = _store(args)
    app = create_app(settings, store=store, config=config)
    print(f"skutag: database {describe_database(store.engine.url)}", file=sys.stderr)
    print(f"skutag: serving on http://{settings.host}:{settings.port}  (dashboard /, API /v1, schema /openapi.json)",
          file=sys.stderr)
    # forwarded headers are read by the app, from service.trusted_proxies only (skutag.service.guards)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, proxy_headers=False)
    return 0


def run_token_create(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        print(store.create_token(args.name))
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    finally:
        store.close()
    return 0


def run_token_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    count = store.revoke_tokens(args.name)
    store.close()
    print(f"revoked {count} token(s) named {args.name!r}", file=sys.stderr)
    return 0 if count else 1


def run_operator_add(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if password != getpass.getpass("again: "):
            raise UserFacingError("the passwords differ")
    store = _store(args)
    try:
        store.set_operator(args.username, password)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    finally:
        store.close()
    print(f"operator {args.username!r} can log in to the dashboard", file=sys.stderr)
    return 0


def run_operator_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        removed = store.remove_operator(args.username)
    finally:
        store.close()
    if not removed:
        raise UserFacingError(f"no operator {args.username!r}")
    print(f"operator {args.username!r} removed; their dashboard sessions have ended", file=sys.stderr)
    return 0


def run_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import OperationalError

    from skutag.store import DatabaseUrlError, open_engine, upgrade

    url = _config(args).service.db_url or None
    try:
        engine = open_engine(url)
        revision = upgrade(engine, args.revision)
    except DatabaseUrlError as exc:
        raise UserFacingError(str(exc)) from None
    except OperationalError as exc:
        raise UserFacingError(f"cannot open the database {url or '(default SQLite)'}: {exc.orig}") from None
    print(f"database {engine.url.render_as_string(hide_password=True)} at revision {revision}")
    engine.dispose()
    return 0
