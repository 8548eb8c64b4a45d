"""The one exception type users see.

Every `TunerError` message is a single line that says what is wrong and how to fix it.
The CLI prints it as ``error: <message>`` and exits with status 2, without a traceback.
"""
from __future__ import annotations


class TunerError(Exception):
    """A user-facing error: bad input, missing data, unreachable storage, ...

    The message must be one line naming the offending file/column/row/key/flag and
    saying how to fix it.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Collapse accidental newlines so the CLI always prints exactly one line.
        super().__init__(" ".join(str(message).split()))
