"""Why an upload was refused, in words a user can act on."""

from __future__ import annotations


class MediaRejected(ValueError):
    """The file cannot be scored as it is. ``code`` is stable for APIs; the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.answer_index: int | None = None  # which answer of an interview, when known
