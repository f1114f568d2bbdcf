"""What the CLI commands share: consoles, JSON output, and the run-where options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from edgerun.errors import ConfigError

out = Console()
err = Console(stderr=True)

INTERRUPTED_EXIT = 130
"""The exit status after Ctrl-C: what shells report for a process ended by SIGINT (128 + 2)."""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def backend_options(command: Any) -> Any:
    """The options every model command shares: where and how to run."""
    for option in reversed(
        [
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
            click.option("--backend", default="auto", show_default=True, help="auto, onnxruntime or tensorrt."),
            click.option(
                "--precision",
                default="auto",
                show_default=True,
                help="auto (the model's own), fp32, fp16, bf16 or int8.",
            ),
            threads_option,
        ]
    ):
        command = option(command)
    return command


threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU intra-op threads (default: the device profile's).",
)


def options_for(threads: int | None) -> dict[str, Any]:
    return {} if threads is None else {"threads": threads}


def emit_json(data: Any, path: Path | None = None) -> None:
    text = json.dumps(data, indent=2, default=str)
    if path is None:
        sys.stdout.write(text + "\n")
    else:
        path.write_text(text + "\n")


_Choice = TypeVar("_Choice", bound=str)


def as_choice(value: str, choices: tuple[_Choice, ...], what: str) -> _Choice:
    """``value`` checked against one of the library's fixed sets (a ``Literal``'s tuple, as in
    ``click.Choice(choices)``) and typed as that ``Literal``: the string click hands over, made safe to pass on."""
    for choice in choices:
        if value == choice:
            return choice
    raise ConfigError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


input_roles_option = click.option(
    "--role",
    "input_roles",
    multiple=True,
    metavar="NAME=ROLE[,key=value]",
    help="What an input means where the model does not say: sr=constant,value=16000; "
    "input_ids=token_ids,vocab=30522; attention_mask=mask; state=state,output=stateN; x=data,batch_axis=1.",
)


def roles_for(input_roles: tuple[str, ...]) -> dict[str, Any]:
    """``--role`` options as ``load(..., inputs=...)``'s argument (empty when none were given)."""
    from edgerun.roles import parse_input_option

    return dict(parse_input_option(text) for text in input_roles)
