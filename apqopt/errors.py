"""The one base class of the errors a user can cause.

Why: the command line turns exactly these into one line and exit 2; anything else is a bug and keeps
its traceback. Each subclass also derives from the built-in it refines (``ValueError``, ...), so code
that caught those keeps working.
"""

from __future__ import annotations


class ApqoptError(Exception):
    """A mistake in the user's input, files or settings (never a bug in apqopt)."""


class ConfigError(ApqoptError, ValueError):
    """A bad option, argument or setting."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, cut to ``limit`` characters: third-party errors (torch's
    unpickler writes a page) go into apqopt's one-line messages without their essays."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
