"""Write docs/cli.md, the CLI reference, from the Typer app (``cerberus.cli.app``).

Run from the repository root: ``PYTHONPATH=src python docs/gen_cli.py`` (``--check``: exit 1 when
the committed page differs). ``tests/test_docs.py`` checks the committed page is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "cli.md"

HEADER = """# CLI reference

Generated from the Typer app by `docs/gen_cli.py` (`PYTHONPATH=src python docs/gen_cli.py`);
do not edit by hand. Every command has `--help`, shows progress bars on long work and turns bad
input into one red line naming the file or value at fault (exit code 2; `--debug` or
`CERBERUS_DEBUG=1` shows the traceback of an unexpected error, exit code 1). Wherever a command
takes `--checkpoint`, either file of a weights pair (`X.safetensors` / `X.json`) works as well.
"""


def _cell(text: str) -> str:
    """One Markdown table cell: no line breaks, pipes and angle brackets escaped."""
    text = " ".join(text.split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _prose(text: str) -> str:
    """A command's help text as Markdown paragraphs (angle brackets escaped)."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]
    return "\n\n".join(p.replace("<", "&lt;").replace(">", "&gt;") for p in paragraphs)


def _command(command, ctx, lines: list[str]) -> None:
    """Append the section of one command, then of its subcommands (depth first)."""
    path = ctx.command_path
    lines += ["", f"## `{path}`", ""]
    if command.help:
        lines += [_prose(command.help), ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```", f"{path} {usage}".rstrip(), "```"]
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or param.name == "help":
            continue
        names, help_text = record
        kind = "argument" if param.param_type_name == "argument" else "option"
        rows.append(f"| `{names}` | {kind} | {_cell(help_text)} |")
    if rows:
        lines += ["", "| name | kind | what |", "|---|---|---|", *rows]
    for name in getattr(command, "commands", {}):
        sub = command.commands[name]
        if not sub.hidden:
            _command(sub, type(ctx)(sub, info_name=name, parent=ctx), lines)


def generate() -> str:
    """The whole page: the global options, then every command in the order ``--help`` lists."""
    import typer

    from cerberus.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="cerberus")
    lines = HEADER.rstrip("\n").split("\n")
    _command(root, ctx, lines)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
        if current != text:
            print(f"{PAGE} is stale: run PYTHONPATH=src python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
