"""User-facing errors.

Anything a user can cause (a bad file, a bad config key, a wrong checkpoint) raises a
:class:`SynthseqError` whose message is ONE line naming the file or key and the problem.
The CLI prints it as ``synthseq: error: <message>`` and exits with status 2, without a traceback.
"""

from __future__ import annotations


class SynthseqError(Exception):
    """Base class for errors caused by user input; the message is shown as-is, on one line."""


class InputError(SynthseqError):
    """A bad input file or folder (missing, corrupt, wrong dimensionality, NaN, mismatched grids...)."""


class ConfigError(SynthseqError):
    """A bad configuration: unknown key, wrong type, unparsable override."""
