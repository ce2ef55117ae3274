"""Command `describe STUDY`: everything a run of a study can be told, read from the study itself: every config
field (type, quick default, allowed range, meaning, whether claims sweep it and whether it may differ inside one
ensemble), the sizes and what each overrides, and the claims. Registered on the main CLI by theorylab.cli.app."""
# no `from __future__ import annotations`: typer reads the option types of the nested commands at runtime

import typing
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from theorylab.core.config import allowed_range


def type_name(annotation: Any) -> str:
    """A field's type as a user writes it: int, float, bool, one of a|b, tuple[int, ...] | None."""
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + "|".join(map(str, typing.get_args(annotation)))
    plain = isinstance(annotation, type) and typing.get_origin(annotation) is None  # int, not tuple[int, ...]
    return annotation.__name__ if plain else str(annotation).replace("typing.", "")


def allowed(cls, name: str) -> str:
    """The allowed values: the declared interval, the choices of a Literal, or the type alone."""
    ann = cls.model_fields[name].annotation
    if typing.get_origin(ann) is typing.Literal:
        return "|".join(map(str, typing.get_args(ann)))
    text = allowed_range(cls, name)
    if not text.startswith("a value of type"):
        return text.split(" in ", 1)[-1]
    if "tuple" in str(ann):  # checked by StudyConfig: finite, non-empty and >= 0 unless the study says signed
        return "finite" + ("" if name in cls.signed_tuples else ", >= 0") + (" (or None)" if "None" in str(ann) else "")
    return "true|false" if ann is bool else "any"


def field_table(study) -> Table:
    cls = study.config_cls
    quick = study.config("quick") if "quick" in study.sizes else study.config(next(iter(study.sizes)))
    t = Table(title=f"{study.name}: config fields (--set key=value; default: the quick size)")
    for col in ("field", "type", "default", "allowed", "role", "meaning"):
        t.add_column(col, overflow="fold", no_wrap=col == "field")
    for name, info in cls.model_fields.items():
        roles = [r for r, on in (("swept", name in cls.swept_fields), ("per-model", name in cls.ensemble_scalars))
                 if on]
        t.add_row(name, type_name(info.annotation), Text(repr(getattr(quick, name))), Text(allowed(cls, name)),
                  ", ".join(roles), Text(info.description or ""))
    return t


def sizes_table(study) -> Table:
    t = Table(title=f"{study.name}: sizes (--size) and the fields each sets")
    for col in ("size", "seeds", "overrides"):
        t.add_column(col, overflow="fold")
    for size, overrides in study.sizes.items():
        text = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "(the field defaults)"
        t.add_row(size, str(study.default_seeds.get(size, 5)), Text(text))
    return t


def claims_table(study) -> Table:
    t = Table(title=f"{study.name}: claims (--claim ID)")
    for col in ("claim", "kind", "theorem", "seeds", "statement"):
        t.add_column(col, overflow="fold", no_wrap=col == "claim")
    for c in study.claims:
        t.add_row(c.id, c.kind, c.theorem, str(c.seeds) if c.seeds else "study's", Text(c.statement))
    return t


def register(app: typer.Typer) -> None:
    from theorylab.cli.app import fail, message, out
    from theorylab.core.study import get_study

    @app.command("describe")
    def describe_cmd(study: str) -> None:
        """A study's config fields (type, default, allowed range, meaning, role), sizes and claims."""
        try:
            s = get_study(study)
        except KeyError as e:
            fail(message(e))
        out.print(f"[bold]{s.name}[/]: {s.title} ({s.paper})", soft_wrap=True)
        out.print(field_table(s))
        out.print("role: [bold]swept[/] = a claim varies it with the world held fixed (common random numbers); "
                  "[bold]per-model[/] = may differ between the models of one ensemble (trained together)", soft_wrap=True)
        out.print(sizes_table(s))
        out.print(claims_table(s))
