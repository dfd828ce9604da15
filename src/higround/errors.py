"""Exceptions the command line reports as one clear line (no traceback).

An error that suggests a fix carries it as data (:class:`Fix`) rather than as text: its plain
message spells the fix for a Python caller (``pass on_bad='skip'``), and the command line re-spells it
as the command at hand accepts it (``--on-bad skip``, ``data.on_bad=skip``); see
:func:`higround.cli.main.spell_fix` and docs/data.md, "Suggested fixes".
"""

from __future__ import annotations

from dataclasses import dataclass


class HigroundError(Exception):
    """Base class of every user-facing error."""


class DataError(HigroundError, ValueError):
    """Bad input data: the message names the file, the record and what is wrong."""


class ConfigError(HigroundError, ValueError):
    """A configuration or checkpoint that does not fit the data or the model."""


class OutputError(HigroundError, OSError):
    """An output path that cannot be written (checked before the work starts)."""


@dataclass(frozen=True)
class Fix:
    """A fix in no particular spelling: set option ``option`` to ``value``.

    Attributes:
        option: the keyword of the Python API, which is also the ``dest`` of the command-line flag
            (``on_bad`` for ``--on-bad``, ``dataset`` for ``--dataset``).
        value: the value to give it (``"skip"``).
        key: the same setting as a recipe key, for commands that take ``KEY=VALUE`` overrides
            (``data.on_bad``).
        purpose: what the fix does, appended to the suggestion (``"to skip bad records"``).
        verb: how the suggestion starts (``"pass"``, ``"use"``).
        python: the spelling for a Python caller (default ``pass on_bad='skip'``).
    """

    option: str
    value: str
    key: str
    purpose: str = ""
    verb: str = "pass"
    python: str = ""

    def suggestion(self, spelled: str) -> str:
        """The suggestion sentence with the fix spelled as ``spelled``."""
        return f"{self.verb} {spelled}" + (f" {self.purpose}" if self.purpose else "")

    def python_spelling(self) -> str:
        """The fix as a Python caller of the readers writes it (``on_bad='skip'``)."""
        return self.python or f"{self.option}={self.value!r}"


class FixableDataError(DataError):
    """A DataError whose message ends with a suggested :attr:`fix`.

    ``str(err)`` is :attr:`message` followed by the fix in Python spelling; the command line calls
    :meth:`with_fix` with the spelling of the command at hand (or None when it has none).
    """

    def __init__(self, message: str, fix: Fix) -> None:
        """``message`` without any suggestion; ``fix`` is appended in the spelling asked for."""
        self.message = message
        self.fix = fix
        super().__init__(self.with_fix(fix.python_spelling()))

    def with_fix(self, spelled: str | None) -> str:
        """The message with the fix spelled as ``spelled``; just the message when None."""
        return self.message if spelled is None else f"{self.message}; {self.fix.suggestion(spelled)}"
