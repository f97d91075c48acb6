"""The project's own input errors: what the command line prints as one line, not a traceback.

Raise :class:`InputError` where a value, file or folder *given by the user* is wrong and
the message says what to fix. It subclasses ``ValueError``, so code that catches
``ValueError`` keeps working; but ``lightning-synth`` turns only ``InputError`` (and a
missing file or folder) into a one-line message, so that a ``ValueError`` from a bug
still shows its traceback.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

__all__ = ["InputError", "USER_ERRORS", "find_user_error"]


class InputError(ValueError):
    """A value, file or folder given by the user is wrong; the message says what to fix."""

    #: The latest messages raised: jsonargparse keeps a constructor's error only as text
    #: when it tried several types (an item of a list inside a union), and
    #: :func:`find_user_error` recognises it by its message.
    recent: ClassVar[deque[str]] = deque(maxlen=32)

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        InputError.recent.append(str(self))


#: Errors that mean "the user's input is wrong", printed as one line by the CLI.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, FileNotFoundError, NotADirectoryError)


def find_user_error(error: BaseException) -> BaseException | None:
    """The user error behind ``error``: itself, or the first of its causes that is one.

    Libraries wrap what they call: jsonargparse re-raises a constructor's error inside
    its own ("Does not validate against any of the Union subtypes ..."), with the
    original as ``__cause__``; the original is the message a user needs.

    Args:
        error: the exception that ended the command.
    """
    seen: set[int] = set()
    texts: list[str] = []
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, USER_ERRORS):
            return current
        seen.add(id(current))
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    for message in reversed(InputError.recent):
        if message and any(message in text for text in texts):
            return InputError(message)
    return None
