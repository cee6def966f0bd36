"""What was said, encrypted in the database: transcripts and quotes in JSON columns.

A scorecard keeps its shape and its numbers in the clear (audits, calibration and overrides
read scores, contributions and measurements straight from the column), while every value under
a key that carries the candidate's words (``transcript``, ``quotes``, an evidence quote's
``text``) is replaced by null and stored, encrypted with the tenant's data key, under
``$sealed`` as ``{JSON pointer: value}``. An answer's stored parts are sealed whole. Documents
stored before encryption was enabled have no ``$sealed`` and are read as they are.
"""

from __future__ import annotations

import copy
from typing import Any

from poise_common.crypto import CryptoError, KeyRing

SEALED = "$sealed"
PRIVATE_KEYS = frozenset({"transcript", "quotes", "text"})
_WHOLE = ""  # the pointer of the document itself


def seal(keys: KeyRing | None, tenant: str, document: Any, aad: str, *, whole: bool = False) -> Any:
    """``document`` with its private values (``whole``: all of it) encrypted; as it is without ``keys``."""
    if keys is None:
        return document
    if whole:
        return {SEALED: keys.seal(tenant, {_WHOLE: document}, aad)}
    taken: dict[str, Any] = {}
    skeleton = _take(document, "", taken)
    if taken:
        skeleton[SEALED] = keys.seal(tenant, taken, aad)
    return skeleton


def unseal(keys: KeyRing | None, tenant: str, stored: Any, aad: str) -> Any:
    """The document :func:`seal` was given."""
    if not isinstance(stored, dict) or SEALED not in stored:
        return stored
    if keys is None:
        raise CryptoError("this record is stored encrypted and this process holds no key ring")
    taken = keys.unseal(tenant, stored[SEALED], aad)
    if _WHOLE in taken:
        return taken[_WHOLE]
    document = copy.deepcopy({k: v for k, v in stored.items() if k != SEALED})
    for pointer, value in taken.items():
        _put(document, pointer, value)
    return document


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _take(node: Any, path: str, taken: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            pointer = f"{path}/{_escape(key)}"
            if key in PRIVATE_KEYS and value is not None:
                taken[pointer] = value
                out[key] = None
            else:
                out[key] = _take(value, pointer, taken)
        return out
    if isinstance(node, list):
        return [_take(value, f"{path}/{index}", taken) for index, value in enumerate(node)]
    return node


def _put(document: Any, pointer: str, value: Any) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
