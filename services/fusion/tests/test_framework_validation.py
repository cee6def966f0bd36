"""Framework files: every problem reported with its line, path and message; the vocabulary matches its producers."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from poise_common.behaviour.vision_summary import summarise_vision
from poise_common.signals import FaceObservation
from poise_fusion.framework import BUNDLED, Framework, FrameworkError, load_framework_file
from poise_fusion.framework_schema import EPISODE_BEHAVIOURS, QUOTE_FEATURES, signal_features

# A valid framework, one entry per line, so that a test can name the line it breaks.
VALID = [
    "name: test-role",                                                                         # 1
    "version: '1'",                                                                            # 2
    "bands:",                                                                                  # 3
    "  - {name: low, below: 50}",                                                              # 4
    "  - {name: high, below: 101}",                                                            # 5
    "competencies:",                                                                           # 6
    "  - name: clarity",                                                                       # 7
    "    label: Clarity",                                                                      # 8
    "    behaviours:",                                                                         # 9
    "      - name: fluent",                                                                    # 10
    "        features:",                                                                       # 11
    "          - {feature: nlp.filler_rate, weight: 2, direction: lower, norm: {low: 0.5, high: 8}}",  # 12
    "          - feature: audio.speech_rate_wpm",                                              # 13
    "            weight: 1",                                                                   # 14
    "            direction: target",                                                           # 15
    "            norm: {target: 150, tolerance: 70}",                                          # 16
    "            evidence: [episodes:long_pause]",                                             # 17
    "  - name: listening",                                                                     # 18
    "    label: Listening",                                                                    # 19
    "    behaviours:",                                                                         # 20
    "      - name: on topic",                                                                  # 21
    "        features:",                                                                       # 22
    "          - {feature: nlp.relevance, weight: 1, direction: higher, norm: {low: 0.03, high: 0.3}}",  # 23
]


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "role.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def changed(**by_line: str | None) -> list[str]:
    """VALID with line N (key ``lN``) replaced, or removed when None (later lines move up)."""
    lines = list(VALID)
    for key in sorted(by_line, key=lambda k: -int(k[1:])):
        number = int(key[1:])
        if by_line[key] is None:
            del lines[number - 1]
        else:
            lines[number - 1] = by_line[key]
    return lines


def problems(path: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(FrameworkError) as info:
        load_framework_file(path)
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_the_valid_template_is_valid(tmp_path):
    framework = load_framework_file(write(tmp_path, VALID))
    assert [c.name for c in framework.competencies] == ["clarity", "listening"]


@pytest.mark.parametrize("path", sorted(BUNDLED.glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_frameworks_are_valid(path):
    framework = load_framework_file(path)
    assert framework.name == path.stem  # one file per role, named after it


@pytest.mark.parametrize(
    ("lines", "line", "path", "message"),
    [
        (changed(l12="          - {feature: nlp.filler_rate, weight: 2, direction: lower, norm: {low: 8, high: 0.5}}"),
         12, "competencies[0].behaviours[0].features[0].norm", "a lower norm needs low < high"),
        (changed(l16="            norm: {target: 150}"),
         16, "competencies[0].behaviours[0].features[1].norm", "a target norm needs target and tolerance > 0"),
        (changed(l16="            norm: {low: 100, high: 200}"),
         16, "competencies[0].behaviours[0].features[1].norm", "a target norm needs target and tolerance > 0"),
        (changed(l12="          - {feature: nlp.filer_rate, weight: 2, direction: lower, norm: {low: 0.5, high: 8}}"),
         12, "competencies[0].behaviours[0].features[0].feature", "did you mean nlp.filler_rate?"),
        (changed(l13="          - feature: audio.speech_rate"),
         13, "competencies[0].behaviours[0].features[1].feature", "unknown signal feature 'audio.speech_rate'"),
        (changed(l17="            evidence: [episodes:long_pauses]"),
         17, "competencies[0].behaviours[0].features[1].evidence[0]", "did you mean episodes:long_pause?"),
        (changed(l17="            evidence: [episodes:long_pause, quotes:frowns]"),
         17, "competencies[0].behaviours[0].features[1].evidence[1]", "unknown evidence 'quotes:frowns'"),
        (changed(l14="            weight: 0"),
         14, "competencies[0].behaviours[0].features[1].weight", "greater than 0"),
        (changed(l14="            wieght: 1"),
         14, "competencies[0].behaviours[0].features[1].wieght", "unknown key 'wieght' (did you mean weight?)"),
        # A missing key is reported at its nearest existing parent: the list item.
        (changed(l14=None), 13, "competencies[0].behaviours[0].features[1].weight", "missing required key 'weight'"),
        (changed(l19=None), 18, "competencies[1].label", "missing required key 'label'"),
        (changed(l18="  - name: clarity"),
         18, "competencies[1].name", "duplicate competency name 'clarity' (also competencies[0])"),
        (changed(l15="            direction: target", l16="            direction: lower"),
         16, "competencies[0].behaviours[0].features[1].direction", "duplicate key 'direction' (first at line 15)"),
        (changed(l5="  - {name: high, below: 50}"), 5, "bands[1].below", "bands must rise: 50 is not above"),
        (changed(l5="  - {name: high, below: 90}"), 5, "bands[1].below", "the last band must reach 100"),
        (changed(l4="  - {name: high, below: 50}"), 5, "bands[1].name", "duplicate band name 'high'"),
        (changed(l2="version: ['1'"), 3, "", "not valid YAML"),
    ],
)
def test_each_problem_names_its_line_path_and_what_is_wrong(tmp_path, lines, line, path, message):
    file = write(tmp_path, lines)
    with pytest.raises(FrameworkError) as info:
        load_framework_file(file)
    found = [(p.line, p.path, p.message) for p in info.value.problems]
    assert any((l, p) == (line, path) and message in m for l, p, m in found), found
    where = f"{file}:{line}: {path}: " if path else f"{file}:{line}: "
    assert any(text.startswith(where) and message in text for text in str(info.value).splitlines())


def test_a_behaviour_name_may_repeat_in_another_competency(tmp_path):
    load_framework_file(write(tmp_path, changed(l21="      - name: fluent")))


def test_duplicate_behaviour_names_within_a_competency(tmp_path):
    lines = VALID[:17] + [
        "      - name: fluent",
        "        features:",
        "          - {feature: nlp.hedge_rate, weight: 1, direction: lower, norm: {low: 0.5, high: 6}}",
    ] + VALID[17:]
    assert problems(write(tmp_path, lines)) == [
        (18, "competencies[0].behaviours[1].name", "duplicate behaviour name 'fluent' (also behaviours[0])"),
    ]


def test_every_problem_is_reported_with_file_and_line(tmp_path):
    lines = changed(
        l5="  - {name: high, below: 90}",
        l8="    label: Clarity\n    colour: blue",  # one more line: later lines move down by one
        l12="          - {feature: nlp.filer_rate, weight: 2, direction: lower, norm: {low: 0.5, high: 8}}",
        l18="  - name: clarity",
        l23="          - {feature: nlp.relevance, weight: -1, direction: higher, norm: {low: 0.3, high: 0.03}}",
    )
    file = write(tmp_path, lines)
    with pytest.raises(FrameworkError) as info:
        load_framework_file(file)
    assert [(p.line, p.path) for p in info.value.problems] == [
        (5, "bands[1].below"),
        (9, "competencies[0].colour"),
        (13, "competencies[0].behaviours[0].features[0].feature"),
        (19, "competencies[1].name"),
        (24, "competencies[1].behaviours[0].features[0].weight"),
        (24, "competencies[1].behaviours[0].features[0].norm"),
    ]
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"{file}:5: bands[1].below: the last band must reach 100")


def test_an_empty_or_non_mapping_file_is_one_problem_at_line_1(tmp_path):
    for text in ("", "- just\n- a list\n"):
        file = tmp_path / "role.yaml"
        file.write_text(text)
        [(line, path, message)] = problems(file)
        assert (line, path) == (1, "") and "valid dictionary" in message


def test_the_model_alone_reports_repeated_names_beside_other_errors():
    data = {
        "name": "r", "version": "1", "bands": [{"name": "a", "below": 100}],
        "competencies": [
            {"name": "c", "label": "C", "behaviours": [{"name": "b", "features": [
                {"feature": "nlp.we_ratio", "weight": 1, "direction": "higher", "norm": {"low": 1, "high": 0}}]}]},
            {"name": "c", "label": "C", "behaviours": [{"name": "b", "features": [
                {"feature": "nlp.we_ratio", "weight": 1, "direction": "higher", "norm": {"low": 0, "high": 1}}]}]},
        ],
    }
    with pytest.raises(ValueError) as info:
        Framework.model_validate(data)
    locs = {tuple(e["loc"]) for e in info.value.errors()}
    assert locs == {("competencies", 0, "behaviours", 0, "features", 0, "norm"), ("competencies", 1, "name")}


# -- the names a framework may use come from the code that produces them ------------------------------
def test_signal_features_are_the_numeric_measurements():
    features = set(signal_features())
    assert {"nlp.filler_rate", "audio.pause_ratio", "vision.eye_contact_ratio", "nlp.word_count"} <= features
    # Lists are evidence, not measurements.
    assert not features & {"vision.episodes", "audio.segments", "nlp.quotes", "nlp.star_parts"}


def test_quote_features_are_the_nlp_analysers():
    from poise_nlp.features import QUOTE_FEATURES as produced

    assert QUOTE_FEATURES == produced


def _face(**values: float) -> FaceObservation:
    base = dict(yaw_deg=0, pitch_deg=0, roll_deg=0, gaze_x=0, gaze_y=0, eyes_open=True, eye_contact=True,
                smile=0, brow_raise=0, lip_press=0, lip_pucker=0, jaw_open=0, blink=0, box=(0.3, 0.3, 0.3, 0.3))
    return FaceObservation(**{**base, **values})


def test_episode_behaviours_include_every_vision_episode():
    fps = 10.0
    shown = [{"smile": 0.9}, {"brow_raise": 0.9}, {"lip_press": 0.9}, {"eye_contact": False}, {}]
    frames = [
        (round((i * 30 + j) / fps, 3), 1, _face(**values))
        for i, values in enumerate(shown) for j in range(30)  # 3 s of each behaviour, then 3 s of none
    ]
    produced = {e.behaviour for e in summarise_vision(frames, fps).episodes}
    assert produced == {"smile", "brow_raise", "lip_press", "gaze_away"}
    assert produced <= set(EPISODE_BEHAVIOURS)


# -- the CLI -------------------------------------------------------------------------------------------
def test_cli_validate_prints_ok_or_every_problem_and_exits_2(tmp_path):
    from poise.cli import app

    good = write(tmp_path, VALID)
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(changed(l14="            weight: 0", l18="  - name: clarity")) + "\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["frameworks", "validate", str(good), *map(str, sorted(BUNDLED.glob("*.yaml")))])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[0] == f"ok {good}"
    failed = runner.invoke(app, ["frameworks", "validate", str(bad), str(good)])
    assert failed.exit_code == 2
    assert failed.stdout.strip() == f"ok {good}"
    assert [line.split(": ")[0] for line in failed.stderr.splitlines()] == [f"{bad}:14", f"{bad}:18"]


def test_cli_show_states_features_weights_and_norms(tmp_path):
    from poise.cli import app

    result = CliRunner().invoke(app, ["frameworks", "show", str(write(tmp_path, VALID))])
    assert result.exit_code == 0, result.output
    assert "nlp.filler_rate [content] weight 2 (67%), lower: 100 at or below 0.5, 0 at or above 8" in result.stdout
    assert "audio.speech_rate_wpm [voice] weight 1 (33%), target: 100 at 150" in result.stdout
    unknown = CliRunner().invoke(app, ["frameworks", "show", "no-such-role"])
    assert unknown.exit_code == 2 and "unknown role" in unknown.stderr
