"""Errors: the library's (a setting with a bad value) and the command line's (reported as one line, exit 2)."""

from __future__ import annotations

from collections.abc import Callable


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


class ParallelError(RuntimeError):
    """A run split over several processes lost one of them (it stopped, or did not answer within the timeout):
    the run ends on every process, nothing is returned or written. The message is one line."""


ADVICE = {
    "a denoising call": ("view_batch_size",),
    "the sync pass": ("sync_batch_size", "sync_checkpointing", "view_batch_size"),
    "the decode": ("width", "height"),
    "the window stack": ("stride", "width", "height"),
}
"""The settings that shrink each phase of a panorama run (:mod:`syncguide.memory`)."""


class OutOfMemory(MemoryError):
    """A panorama needs more memory than the device has: ``phase`` (a key of :data:`ADVICE`, or None for an
    out-of-memory error raised while sampling), ``device``, ``need`` and ``free`` bytes (None where unknown).

    :meth:`message` says how to fit, naming settings through ``name`` (the command line passes its option names).
    """

    def __init__(self, phase: str | None, device: str, need: float | None = None, free: float | None = None) -> None:
        self.phase, self.device, self.need, self.free = phase, device, need, free
        super().__init__(self.message(lambda setting: setting))

    def message(self, name: Callable[[str], str]) -> str:
        """The one-line explanation, with the settings to change named by ``name(setting)``."""
        if self.phase is None:
            what = f"{self.device} ran out of memory while sampling"
            settings = dict.fromkeys(s for advice in ADVICE.values() for s in advice)
        else:
            what = f"{self.phase} needs at least about {_gib(self.need)} but {self.device} has {_gib(self.free)} free"
            settings = dict.fromkeys(ADVICE[self.phase])
        tips = {
            "sync_batch_size": f"{name('sync_batch_size')} 1",
            "sync_checkpointing": name("sync_checkpointing"),
            "stride": f"a larger {name('stride')}",
        }
        hint = ", ".join(tips.get(s, f"a smaller {name(s)}") for s in settings)
        return f"{what}: to fit, try {hint}, or float16 on a GPU"


def _gib(size: float | None) -> str:
    return "?" if size is None else f"{max(round(size / 2**30, 1), 0.1)} GiB"
