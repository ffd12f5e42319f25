"""The ``syncguide`` command: parse, dispatch, and turn bad input into one line with exit status 2."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from syncguide.cli import app, batch, demo, evaluate, finetune, generate, info, layout, panorama, recall, reproduce
from syncguide.cli.options import BAD_INPUT, error_message
from syncguide.cli.parser import Parser, make_parser
from syncguide.errors import ParallelError, UsageError

COMMANDS = (panorama, layout, generate, finetune, demo, batch, evaluate, reproduce, info, app)
"""The subcommand modules, in the order ``--help`` lists them."""

__all__ = ["COMMANDS", "Parser", "build_parser", "main"]


def build_parser() -> Parser:
    """The full command-line parser with every subcommand."""
    return make_parser(COMMANDS)


def quiet_libraries() -> None:
    """Keep stderr for our progress bar and errors: no loading bars or info logs from diffusers/transformers."""
    import diffusers
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.disable_progress_bar()
        library.utils.logging.set_verbosity_error()


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    """Warnings on the command line: ``syncguide: warning: MESSAGE``, one line, no source location."""
    return f"syncguide: warning: {message}\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (as Ctrl-C's KeyboardInterrupt) so that every cleanup runs."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a parallel run lost a process, 2 bad input, 130 Ctrl-C,
    143 SIGTERM).

    Bad input, a :class:`~syncguide.errors.UsageError` from the command line or a
    :class:`~syncguide.errors.SettingError` from the library (mapped to its option by
    :mod:`syncguide.cli.options`), is one line ``syncguide CMD: error: --option: rule``. An interrupt is one line
    too; files are written atomically, so none is left half-written or temporary.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if getattr(args, "from_png", None) is not None:  # --from FILE.png: its settings, then the options typed
        try:
            args = parser.parse_args(recall.expand(parser, argv, args))
        except UsageError as error:
            print(f"syncguide {command_name(args)}: error: {error}", file=sys.stderr)
            return 2
    quiet_libraries()
    formatting, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    handler = None
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.run(args)
    except BAD_INPUT as error:
        print(f"syncguide {command_name(args)}: error: {error_message(error)}", file=sys.stderr)
        return 2
    except ParallelError as error:  # a run over several processes lost one: not bad input, but no traceback either
        print(f"syncguide {command_name(args)}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        print(f"syncguide {command_name(args)}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    finally:  # a caller in the same process (tests, scripts) gets its warning format and SIGTERM handler back
        warnings.formatwarning = formatting
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def command_name(args: argparse.Namespace) -> str:
    """The subcommand that ran, e.g. ``eval`` or ``demo world``."""
    return " ".join(filter(None, (args.command, getattr(args, "demo_command", None))))


if __name__ == "__main__":
    sys.exit(main())
