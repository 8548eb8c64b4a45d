"""Shared secrets for the doors tuner opens: the storage proxy's and the dashboard's token.

A token comes from a file (``--token-file``, or the file an environment variable names) or from an
environment variable, never from the command line, where ``ps`` would show it to every user of the
machine. It is one line of printable ASCII; a server asks for at least :data:`MIN_TOKEN_CHARS`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from tuner.errors import TunerError

MIN_TOKEN_CHARS = 16
NEW_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def read_token(door: str, token_file: "str | os.PathLike[str] | None", env_file: str, env_value: str, *,
               min_chars: Optional[int] = MIN_TOKEN_CHARS) -> Optional[str]:
    """The token of ``door`` (``"proxy"``, ``"dashboard"``): from ``token_file``, else the file named by
    ``$env_file``, else ``$env_value``; None when none is set. One-line :class:`TunerError` for an
    unreadable, empty or multi-word token, and one shorter than ``min_chars`` (None: any length)."""
    file_env = os.environ.get(env_file, "").strip()
    if token_file is not None or file_env:
        where = f"--token-file {token_file}" if token_file is not None else f"${env_file}={file_env}"
        path = Path(token_file if token_file is not None else file_env).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TunerError(f"cannot read the {door} token from {where} ({getattr(exc, 'strerror', None) or exc}); "
                             "give a file holding one line, the token") from None
    elif os.environ.get(env_value, "").strip():
        where, token = f"${env_value}", os.environ[env_value].strip()
    else:
        return None
    if not token:
        raise TunerError(f"the {door} token from {where} is empty; put the token in it, e.g. {NEW_TOKEN}")
    if not all(33 <= ord(c) < 127 for c in token):
        raise TunerError(f"the {door} token from {where} has spaces, line breaks or non-ASCII characters; use one "
                         f"line of printable ASCII, e.g. {NEW_TOKEN}")
    if min_chars is not None and len(token) < min_chars:
        raise TunerError(f"the {door} token from {where} has {len(token)} characters; use {min_chars} or more, "
                         f"e.g. {NEW_TOKEN}")
    return token
