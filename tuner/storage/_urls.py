"""Storage URLs: which database a study lives in, and how it is printed.

- :func:`resolve_url`: ``--storage``, else ``$TUNER_STORAGE``, else ``sqlite:///tuner.db`` (in
  the working directory). ``postgres://`` and ``postgresql://`` use the psycopg 3 driver,
  ``mysql://`` and ``mariadb://`` use pymysql; a bare ``*.db`` path means SQLite;
  ``grpc://host:port`` is a client of ``python -m tuner storage-proxy`` and ``grpcs://host:port`` one of
  a proxy serving TLS (:mod:`tuner.storage._grpc` reads its CA file and token from the environment).
- :func:`mask_url` / :func:`mask_text`: ``postgresql+psycopg://user:***@host/db``. Every URL that is
  printed or saved goes through them.

Pure string handling (no optuna, no SQLAlchemy engine): every other storage module builds on it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from tuner.errors import TunerError

ENV_STORAGE = "TUNER_STORAGE"
DEFAULT_URL = "sqlite:///tuner.db"
DEFAULT_HEARTBEAT_INTERVAL = 10
DEFAULT_GRACE_PERIOD = 30
SQLITE_BUSY_TIMEOUT_S = 60.0

_SCHEMES = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "grpc": "grpc",
    "grpcs": "grpcs",
}
_DRIVER_PACKAGES = {"postgresql+psycopg": "psycopg[binary]", "postgresql+psycopg2": "psycopg2-binary",
                    "mysql+pymysql": "pymysql"}


# --------------------------------------------------------------------------------------------
# URLs


def mask_text(text: str) -> str:
    """Hide passwords in any text holding URLs (``postgresql://user:***@host/db``, ``?password=***``)."""
    text = re.sub(r"([A-Za-z][\w+.\-]*://[^:/?#@\s]*):[^/?#\s]*@", r"\1:***@", str(text))
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&#\s]*", r"\1***", text)


def mask_url(url: str) -> str:
    """The URL with its password (in ``user:password@`` or ``?password=``) replaced by ``***``:
    safe to print, log or save."""
    text = str(url)
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(text)
        if parsed.password is not None:
            text = parsed.render_as_string(hide_password=True)
    except Exception:  # unparsable: the regular expressions below still mask it
        pass
    return mask_text(text)


def resolve_url(url: Optional[str] = None) -> str:
    """``--storage`` value, else ``$TUNER_STORAGE``, else ``sqlite:///tuner.db``; normalised."""
    text = url if url is not None and str(url).strip() else os.environ.get(ENV_STORAGE, "")
    text = str(text).strip() or DEFAULT_URL
    origin = "--storage" if url else (ENV_STORAGE if os.environ.get(ENV_STORAGE, "").strip() else "default")
    if "://" not in text:
        if text.endswith((".db", ".sqlite", ".sqlite3")):
            return "sqlite:///" + text
        raise TunerError(
            f"storage '{mask_url(text)}' ({origin}) is not a URL; use sqlite:///tuner.db, "
            "postgresql://user:password@host:5432/db, mysql://user:password@host:3306/db, grpc://host:13000 or grpcs://host:13000"
        )
    scheme, rest = text.split("://", 1)
    normalised = _SCHEMES.get(scheme.lower())
    if normalised is None:
        raise TunerError(
            f"storage URL scheme '{scheme}://' ({origin}) is not supported; use sqlite:///FILE, "
            "postgresql://user:password@host/db, mysql://user:password@host/db, grpc://host:port or grpcs://host:port"
        )
    if normalised in ("grpc", "grpcs"):
        parse_grpc_url(f"{normalised}://{rest}", origin)
    if normalised == "sqlite" and rest not in ("", "/", "/:memory:") and not rest.startswith("/"):
        raise TunerError(
            f"storage '{text}' ({origin}) has too few slashes; write sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    return f"{normalised}://{rest}"


def parse_grpc_url(url: str, origin: str = "--storage") -> tuple[str, int]:
    """``(host, port)`` of ``grpc://host:port`` or ``grpcs://host:port`` (a ``python -m tuner storage-proxy``,
    plain or TLS); one-line error otherwise."""
    scheme, rest = url.split("://", 1)
    rest = rest.rstrip("/")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest or "@" in rest:
        shown = "grpcs" if scheme.lower() == "grpcs" else "grpc"
        raise TunerError(f"storage '{mask_url(url)}' ({origin}): write {shown}://HOST:PORT for a tuner storage-proxy, "
                         f"e.g. {shown}://127.0.0.1:13000")
    return host, int(port)


def is_tls_url(url: str) -> bool:
    """True for ``grpcs://`` (a storage proxy that serves TLS)."""
    return url.split("://", 1)[0].lower() == "grpcs"


def require_shared(url: str, why: str = "optimize starts worker processes") -> None:
    """One-line error for ``sqlite:///:memory:`` where several processes must share the storage
    (each process would get its own empty database); in one process it works."""
    if dialect_of(url) == "sqlite" and sqlite_path(url) is None:
        raise TunerError(f"storage {url} lives inside one process and {why}; use sqlite:///FILE.db, or serve it "
                         "to them with python -m tuner storage-proxy --storage sqlite:///:memory:")


def dialect_of(url: str) -> str:
    """``sqlite``, ``postgresql``, ``mysql`` or ``grpc`` (the storage proxy, ``grpc://`` or ``grpcs://``)."""
    dialect = url.split("://", 1)[0].split("+", 1)[0].lower()
    return "grpc" if dialect == "grpcs" else dialect


def sqlite_path(url: str) -> Optional[Path]:
    """The database file of an SQLite URL (None for in-memory)."""
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path)


def default_artifacts_dir(url: str) -> Path:
    """Artifacts beside an SQLite file (``<db dir>/artifacts``); ``./artifacts`` for servers."""
    if dialect_of(url) == "sqlite":
        db = sqlite_path(url)
        if db is not None:
            return db.resolve().parent / "artifacts"
    return Path("artifacts").resolve()


