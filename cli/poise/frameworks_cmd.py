"""`poise frameworks`: check framework files and show how a role is scored."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

frameworks_app = typer.Typer(no_args_is_help=True, help="Competency frameworks (one YAML file per role).")


@frameworks_app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="Framework files (YAML).")],
) -> None:
    """Check each file; print "ok FILE" or every problem as FILE:LINE: PATH: MESSAGE (exit 2)."""
    from poise_fusion.framework import FrameworkError, load_framework_file

    broken = False
    for file in files:
        try:
            load_framework_file(file)
        except FrameworkError as exc:
            broken = True
            print(exc, file=sys.stderr)
            continue
        print(f"ok {file}")
    if broken:
        raise typer.Exit(2)


@frameworks_app.command("show")
def show(
    role: Annotated[str, typer.Argument(help="A role (see `poise roles`) or a framework file.")],
) -> None:
    """The role's competencies, behaviours, features, weights and norms (how a raw value becomes 0..100)."""
    from poise.cli import fail
    from poise_common.settings import PoiseSettings
    from poise_fusion.framework import FrameworkError, get_framework, load_framework_file

    try:
        path = Path(role)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            framework = load_framework_file(path)
        else:
            framework = get_framework(role, PoiseSettings().fusion.frameworks_dir)
    except FrameworkError as exc:
        fail(str(exc))
    bands = ", ".join(f"{b.name} < {b.below:g}" for b in framework.bands)
    print(f"{framework.name} {framework.version}: {framework.description}".rstrip(": "))
    print(f"bands: {bands}; a competency needs {framework.min_coverage:.0%} of its weight measured")
    for competency in framework.competencies:
        total = sum(f.weight for f in competency.features)
        needs = f" (needs {', '.join(competency.requires)})" if competency.requires else ""
        print(f"\n{competency.name}: {competency.label}{needs}")
        for behaviour in competency.behaviours:
            print(f"  {behaviour.name}")
            for f in behaviour.features:
                evidence = f"; evidence {', '.join(f.evidence)}" if f.evidence else ""
                print(f"    {f.feature} [{f.modality}] weight {f.weight:g} ({f.weight / total:.0%}), "
                      f"{f.direction}: {f.norm_text()}{evidence}")
