"""The argument parser: one-line errors with exit status 2, built from the command modules it is given.

Each command module has ``add_parser(subparsers)``, which registers its subcommand with a ``run`` default. The
full parser is :func:`syncguide.cli.main.build_parser`; a command that reads other commands' argument lists
(``batch`` reads ``panorama`` command lines) builds a parser of just those, so no command imports ``main``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from types import ModuleType

from syncguide.errors import UsageError


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class RaisingParser(Parser):
    """A parser whose errors raise :class:`~syncguide.errors.UsageError` with the message (the web app shows it
    in the page instead of exiting)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def make_parser(commands: Iterable[ModuleType], parser_class: type[Parser] = Parser) -> Parser:
    """A ``syncguide`` parser with the subcommands of ``commands`` (modules with ``add_parser``), in order;
    ``parser_class`` for it and every subcommand."""
    parser = parser_class(prog="syncguide", description="Training-free guided diffusion sampling.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=parser_class)
    for command in commands:
        command.add_parser(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser`` by name (empty for a leaf command). argparse has no public accessor:
    this is the one place that reads its private action list for them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every option string of ``parser`` (``--steps``, ``-h``, ...) and its action."""
    return dict(parser._option_string_actions)


def actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of ``parser`` (options and positionals), in the order they were added."""
    return list(parser._actions)
