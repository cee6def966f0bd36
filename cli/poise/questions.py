"""Read a questions file: one question per answer, YAML or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from poise_common.messages import Question


class QuestionsError(ValueError):
    pass


def load_questions(path: Path) -> list[Question]:
    """Accepts a list of strings, a list of {id, text}, or {questions: [...]}."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise QuestionsError(f"cannot read questions file: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise QuestionsError(f"questions file is not valid {'JSON' if path.suffix == '.json' else 'YAML'}") from exc
    if isinstance(data, dict):
        data = data.get("questions")
    if not isinstance(data, list) or not data:
        raise QuestionsError("questions file must hold a non-empty list of questions")
    questions = []
    for n, item in enumerate(data, start=1):
        if isinstance(item, str):
            questions.append(Question(question_id=f"q{n}", text=item))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            questions.append(Question(question_id=str(item.get("id", f"q{n}")), text=item["text"]))
        else:
            raise QuestionsError(f"question {n} must be a string or have a 'text' field")
    return questions
