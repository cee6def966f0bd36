"""Why an upload was refused, in words a user can act on."""

from __future__ import annotations


class MediaRejected(ValueError):
    """The file cannot be scored as it is. ``code`` is stable for APIs; the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.answer_index: int | None = None  # which answer of an interview, when known


class MediaJobKilled(RuntimeError):
    """A process reading a file was stopped from outside (the kernel's OOM killer, an operator, a
    shutdown): the server's trouble, not the file's, so the same request may well succeed again.

    ``status`` is the HTTP status the APIs answer with (503); ``code`` and ``message`` as in
    ``MediaRejected``.
    """

    status = 503

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
