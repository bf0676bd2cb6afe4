"""Who may use the product database: API tokens and operator logins (hashed, never stored in clear), and the
shared settings; the ``Store`` methods for them live in ``AccessMixin``."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from skutag.store.models import ApiTokenRow, OperatorRow, SettingRow, utcnow
from skutag.store.views import aware

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, _ = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt_hex)), stored)


class AccessMixin:
    """``Store``'s token, operator and setting methods (each one short transaction through ``self.session()``)."""

    if TYPE_CHECKING:
        def session(self) -> AbstractContextManager[Session]: ...

    def create_token(self, name: str) -> str:
        """A new API token (printed once; only its hash is stored)."""
        if not name or len(name) > 128:
            raise ValueError("a token needs a name of 1-128 characters")
        token = "skt_" + secrets.token_urlsafe(32)
        with self.session() as session:
            session.add(ApiTokenRow(name=name, token_sha256=hash_token(token)))
        return token

    def check_token(self, token: str) -> str | None:
        """The token's name when it is valid and not revoked, else None."""
        if not token:
            return None
        with self.session() as session:
            row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_sha256 == hash_token(token)))
            if row is None or row.revoked:
                return None
            now = utcnow()
            last = row.last_used_at
            if last is None or (now - aware(last)).total_seconds() > 60:
                row.last_used_at = now
            return row.name

    def revoke_tokens(self, name: str) -> int:
        with self.session() as session:
            result = session.execute(update(ApiTokenRow).where(ApiTokenRow.name == name, ApiTokenRow.revoked.is_(False))
                                     .values(revoked=True))
            return int(result.rowcount or 0)

    def set_operator(self, username: str, password: str) -> None:
        if not username or len(username) > 128:
            raise ValueError("a username needs 1-128 characters")
        if len(password) < 8:
            raise ValueError("an operator password needs at least 8 characters")
        with self.session() as session:
            row = session.scalar(select(OperatorRow).where(OperatorRow.username == username))
            if row is None:
                session.add(OperatorRow(username=username, password_hash=hash_password(password)))
            else:
                row.password_hash = hash_password(password)

    def check_operator(self, username: str, password: str) -> bool:
        with self.session() as session:
            stored = session.scalar(select(OperatorRow.password_hash).where(OperatorRow.username == username))
        if stored is None:
            hash_password(password)  # same work either way: no user-enumeration by timing
            return False
        return verify_password(password, stored)

    def remove_operator(self, username: str) -> bool:
        """Delete an operator (their dashboard sessions end with it); False when there was none."""
        with self.session() as session:
            row = session.scalar(select(OperatorRow).where(OperatorRow.username == username))
            if row is None:
                return False
            session.delete(row)
        return True

    def operator_session_stamp(self, username: str) -> str | None:
        """What a dashboard session of ``username`` must carry to be valid: it changes when their password
        changes or ``end_operator_sessions`` runs (logout), and is None once the operator is removed."""
        with self.session() as session:
            stored = session.scalar(select(OperatorRow.password_hash).where(OperatorRow.username == username))
            epoch = session.scalar(select(SettingRow.value).where(SettingRow.key == _epoch_key(username)))
        if stored is None:
            return None
        return hashlib.sha256(f"{stored}|{epoch or ''}".encode("utf-8")).hexdigest()[:32]

    def end_operator_sessions(self, username: str) -> None:
        """Every dashboard session of ``username`` ends now (a new session epoch)."""
        self.set_setting(_epoch_key(username), secrets.token_hex(16))

    def operator_count(self) -> int:
        with self.session() as session:
            return int(session.scalar(select(func.count()).select_from(OperatorRow)) or 0)

    # -------------------------------------------------------------- settings
    def set_setting(self, key: str, value: str) -> None:
        """Set a shared setting (created or replaced)."""
        with self.session() as session:
            row = session.get(SettingRow, key)
            if row is None:
                session.add(SettingRow(key=key, value=value))
            else:
                row.value = value

    def setting(self, key: str, default_factory=None) -> str | None:
        """A shared setting; with ``default_factory`` it is created once (race-safe) when missing."""
        with self.session() as session:
            value = session.scalar(select(SettingRow.value).where(SettingRow.key == key))
        if value is not None or default_factory is None:
            return value
        try:
            with self.session() as session:
                session.add(SettingRow(key=key, value=default_factory()))
        except IntegrityError:
            pass
        with self.session() as session:
            return session.scalar(select(SettingRow.value).where(SettingRow.key == key))


def _epoch_key(username: str) -> str:
    return "session_epoch:" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:40]  # the key column holds 64
