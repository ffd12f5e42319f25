"""Errors: the library's (a setting with a bad value) and the command line's (reported as one line, exit 2)."""

from __future__ import annotations


class SettingError(ValueError):
    """A library setting whose value breaks its rule.

    ``setting`` is the keyword or field name (``sync_weight``, ``num_inference_steps``); ``rule`` says what is
    wrong, with the value (``must be >= 0; got -1``). The command line maps ``setting`` to its option name once
    (``syncguide.cli.options``) and prints one line.
    """

    def __init__(self, setting: str, rule: str) -> None:
        super().__init__(f"{setting} {rule}")
        self.setting = setting
        self.rule = rule


class UsageError(ValueError):
    """Bad command-line input: the message names the option and the rule it breaks."""


class NonFiniteError(ArithmeticError):
    """Sampling produced NaN or infinite values at ``step`` (0-based) of ``total``: nothing is returned or written."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(
            f"the latents became NaN or infinite at step {step + 1} of {total}: a guidance or sync weight too high,"
            " or a float16 overflow (try a smaller weight or float32)"
        )
        self.step = step
        self.total = total
