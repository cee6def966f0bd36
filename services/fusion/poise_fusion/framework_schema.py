"""What a framework file may name, and reading it so that every problem points at its line.

The names a framework may use come from the code that produces them: signal features are
the numeric fields of the analysers' records (``poise_common.signals``; the vision record is
what ``poise_common.behaviour.vision_summary`` fills in), quote features are the NLP
analyser's ``Quote.feature`` values and episode behaviours the vision and audio analysers'
``Episode.behaviour`` values. A test checks these lists against their producers.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml
from pydantic import BaseModel

from poise_common.signals import AudioSignals, NlpSignals, VisionSignals

# poise_nlp.features.QUOTE_FEATURES (fusion does not depend on the NLP service).
QUOTE_FEATURES: tuple[str, ...] = (
    "fillers", "hedges", "perspective_taking", "question_reference",
    "star_situation", "star_task", "star_action", "star_result", "we",
)
# Episodes of poise_common.behaviour.vision_summary (face) and poise_audio.analysis (voice).
EPISODE_BEHAVIOURS: tuple[str, ...] = ("smile", "brow_raise", "lip_press", "gaze_away", "long_pause")
SIGNAL_RECORDS: dict[str, type[BaseModel]] = {"vision": VisionSignals, "audio": AudioSignals, "nlp": NlpSignals}


def _is_number(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # float | None
        return all(_is_number(arg) or arg is type(None) for arg in typing.get_args(annotation))
    return annotation in (int, float)


@cache
def signal_features() -> tuple[str, ...]:
    """Every measurement a feature can name, as ``group.field`` (lists such as episodes are not measurements)."""
    return tuple(
        f"{group}.{name}"
        for group, record in SIGNAL_RECORDS.items()
        for name, field in record.model_fields.items()
        if _is_number(field.annotation)
    )


def evidence_sources() -> tuple[str, ...]:
    """Every ``quotes:<feature>`` and ``episodes:<behaviour>`` a feature's evidence can name."""
    return (*(f"quotes:{q}" for q in QUOTE_FEATURES), *(f"episodes:{e}" for e in EPISODE_BEHAVIOURS))


def unknown_name(kind: str, value: str, known: Sequence[str]) -> str:
    """The message for a name that is not in ``known``, with the closest known one when there is one."""
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.75)
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
    return f"unknown {kind} {value!r} ({hint})"


# -- problems with their place in the file ------------------------------------------------------
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a framework file, where it is."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


def path_text(loc: Loc) -> str:
    """``("competencies", 2, "name")`` -> ``competencies[2].name``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


@dataclass
class LocatedDocument:
    """A YAML document's data with its node tree, which knows the line of every value."""

    data: Any
    root: yaml.Node | None
    problems: list[Problem]

    def line_of(self, loc: Loc) -> int:
        """The 1-based line of the node at ``loc``, or of its nearest existing parent."""
        node, line = self.root, 1
        if node is not None:
            line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                entry = next((k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
                if entry is None:
                    break
                # A mapping entry is reported at its key: that is the line that says "norm:".
                line = entry.start_mark.line + 1
                node = next(v for k, v in node.value if k is entry)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


def read_yaml(text: str, file: str) -> LocatedDocument:
    """Parse one YAML document keeping its nodes; a syntax error or a repeated key is a problem, not an exception."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return LocatedDocument(None, None, [Problem(file, line, "", f"not valid YAML: {exc.problem or exc}")])
    except yaml.YAMLError as exc:
        return LocatedDocument(None, None, [Problem(file, 1, "", f"not valid YAML: {exc}")])
    finally:
        loader.dispose()
    return LocatedDocument(data, root, [Problem(file, *found) for found in _repeated_keys(root, ())])


def _repeated_keys(node: yaml.Node | None, loc: Loc) -> Iterator[tuple[int, str, str]]:
    # PyYAML keeps the last of two equal keys without a word; a framework must not.
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is None:
                continue
            line = key.start_mark.line + 1
            if name in first:
                yield line, path_text((*loc, name)), f"duplicate key {name!r} (first at line {first[name]})"
            else:
                first[name] = line
            yield from _repeated_keys(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _repeated_keys(item, (*loc, index))
