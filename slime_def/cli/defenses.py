"""``slime-def defenses``: list the registered defenses with their parameters."""

from __future__ import annotations

import inspect
import json

import click


def _parameter_rows(entry) -> list[dict]:
    rows = []
    for name, param in inspect.signature(entry.factory).parameters.items():
        required = param.default is inspect.Parameter.empty
        rows.append({
            "name": name,
            "default": None if required else param.default,
            "required": required,
            "unit": entry.units.get(name, ""),
        })
    return rows


def _entry_record(entry) -> dict:
    return {
        "name": entry.name,
        "family": entry.family,
        "summary": entry.summary,
        "parameters": _parameter_rows(entry),
        "example": entry.example_spec(),
        "identity": entry.identity,
        "randomness": entry.randomness,
    }


def _format_table(records: list[dict]) -> str:
    params = [param for record in records for param in record["parameters"]]
    name_width = max(len(record["name"]) for record in records)
    param_width = max((len(param["name"]) for param in params), default=0)
    value_width = max((len(_format_default(param)) for param in params), default=0)

    lines = []
    for record in records:
        lines.append(f"{record['name']:<{name_width}}  [{record['family']}]  {record['summary']}")
        for param in record["parameters"]:
            value = _format_default(param)
            lines.append(f"    {param['name']:<{param_width}}  {value:<{value_width}}  {param['unit']}".rstrip())
        if any(param["required"] for param in record["parameters"]):
            lines.append(f"    example: {record['example']}")
    return "\n".join(lines)


def _format_default(param: dict) -> str:
    return "(required)" if param["required"] else repr(param["default"])


@click.command(
    "defenses",
    epilog=(
        "\b\nExamples:\n"
        "  slime-def defenses\n"
        "  slime-def defenses --family dp --format json\n\n"
        "Chain defenses left to right with '|', e.g. --defense 'quantize(bits=4)|random_projection(dim=256)'."
    ),
)
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output as a readable table or as JSON.")
@click.option("--family", default=None, metavar="NAME",
              help="Show only one family, e.g. noise, dp, quantization, dimensionality.")
def defenses(output_format: str, family: str | None) -> None:
    """List every registered defense with its family, parameters, units and defaults.

    Includes defenses from installed packages that declare the entry-point
    group 'slime_def.defenses'.
    """
    from slime_def.defenses.base import available_defenses

    entries = list(available_defenses().values())
    if family is not None:
        families = sorted({entry.family for entry in entries})
        entries = [entry for entry in entries if entry.family == family]
        if not entries:
            raise click.BadParameter(
                f"no defense in family {family!r}; known families: {', '.join(families)}",
                param_hint="--family",
            )

    records = [_entry_record(entry) for entry in entries]
    if output_format == "json":
        click.echo(json.dumps(records, indent=2))
    else:
        click.echo(_format_table(records))
