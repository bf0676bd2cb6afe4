"""Opening the product database: SQLite (WAL) by default, PostgreSQL (psycopg 3) by URL.

``open_engine(url)`` normalises the URL, sets the SQLite pragmas on every connection and
returns an engine; ``upgrade(engine)`` applies the Alembic migrations shipped in
``skutag/store/migrations`` (the service runs it on startup, ``skutag db upgrade`` by hand).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from skutag.paths import skutag_home
from skutag.redact import redact

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class DatabaseUrlError(ValueError):
    """A database URL skutag cannot use."""


def default_url() -> str:
    return f"sqlite:///{skutag_home() / 'skutag.db'}"


def normalise_url(url: str | None) -> str:
    """``postgres://`` and ``postgresql://`` -> the psycopg 3 driver; a bare file path -> SQLite."""
    if not url:
        return default_url()
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise DatabaseUrlError(f"cannot read database URL {redact(url)!r}: {redact(exc)}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres" or (backend == "postgresql" and parsed.drivername in {"postgresql", "postgres"}):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in {"sqlite", "postgresql"}:
        raise DatabaseUrlError(f"unsupported database {backend!r} in {redact(url)!r}: use sqlite:///FILE or "
                               "postgresql://...")
    return parsed.render_as_string(hide_password=False)


def open_engine(url: str | None = None, *, echo: bool = False) -> Engine:
    """An engine for ``url`` (default: ``$SKUTAG_HOME/skutag.db``)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine, connection=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply the migrations up to ``revision``; returns the revision the database is at afterwards."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_alembic_config(engine, connection), revision)
    return current_revision(engine) or "base"


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(open_engine("sqlite://"))
    return ScriptDirectory.from_config(config).get_current_head()


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
