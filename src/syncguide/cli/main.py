"""The ``syncguide`` command: parse, dispatch, and turn bad input into one line with exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from syncguide.cli import batch, demo, evaluate, finetune, generate, layout, panorama, reproduce
from syncguide.errors import UsageError


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    """The full command-line parser with every subcommand."""
    parser = Parser(prog="syncguide", description="Training-free guided diffusion sampling.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    panorama.add_parser(sub)
    layout.add_parser(sub)
    generate.add_parser(sub)
    finetune.add_parser(sub)
    demo.add_parser(sub)
    batch.add_parser(sub)
    evaluate.add_parser(sub)
    reproduce.add_parser(sub)
    return parser


def quiet_libraries() -> None:
    """Keep stderr for our progress bar and errors: no loading bars or info logs from diffusers/transformers."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.disable_progress_bar()
        library.utils.logging.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return args.run(args)
    except UsageError as error:
        command = " ".join(filter(None, (args.command, getattr(args, "demo_command", None))))
        print(f"syncguide {command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
