"""The service's database as the command line opens it (``--db URL`` of ``skutag taxonomy`` / ``skutag brands``)."""

from __future__ import annotations

from pathlib import Path

from skutag.cli import UserFacingError


def open_existing_store(url: str):
    """The service database at ``url``; it must exist already (a mistyped URL must not make a new, empty
    one that the import would then fill)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from skutag.store import DatabaseUrlError, Store, current_revision, normalise_url, open_engine, upgrade

    if not url.strip():
        raise UserFacingError("--db needs a database URL (sqlite:///FILE or postgresql://...)")
    try:
        parsed = make_url(normalise_url(url))
    except DatabaseUrlError as exc:
        raise UserFacingError(str(exc)) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        raise UserFacingError(f"no database at {shown}: give the URL the service runs on (`skutag serve --db URL`)")
    engine = open_engine(url)
    try:
        revision = current_revision(engine)
        if revision is None:
            raise UserFacingError(f"{shown} holds no skutag service database (no schema): give the URL the "
                                  "service runs on (`skutag serve --db URL`)")
        upgrade(engine)  # as the service does on start
    except DBAPIError as exc:
        engine.dispose()
        raise UserFacingError(f"cannot open the database {shown}: {' '.join(str(exc.orig).split())}") from None
    except UserFacingError:
        engine.dispose()
        raise
    return Store(engine)


def read_resource(url: str, kind: str):
    """The newest stored version of the resource ``kind`` (taxonomy, lexicon ...) in the database at ``url``,
    or None when none was saved."""
    store = open_existing_store(url)
    try:
        return store.resource(kind)
    finally:
        store.close()
