"""Errors dhm expects users to meet.

Every class here is a *known* failure: the CLI prints it as one line on stderr and
exits non-zero. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class DhmError(Exception):
    """Base class for expected, user-facing failures."""

    exit_code = 1


class CheckpointError(DhmError):
    """A checkpoint that cannot be read, matches no known layout, or holds bad values."""


class SpecError(DhmError):
    """Shapes, widths, modes or manifests that do not fit together."""


class DatasetError(DhmError):
    """A dataset folder that is missing files, inconsistent or unreadable."""


class AudioTeacherError(DhmError):
    """A HuBERT folder or wenet encoder that cannot give Ultralight's features."""


class OutputError(DhmError):
    """An output location that cannot be written, or would clobber another run."""


class ConversionError(DhmError):
    """An exporter, converter or quantizer that failed or crashed."""


class ParityError(DhmError):
    """An artefact that does not match its reference within tolerance."""


class DeviceError(DhmError):
    """The phone, adb or the MNN tools on it did not do what was asked."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so every temporary output is cleaned up (a
    KeyboardInterrupt, so no `except Exception` swallows it)."""
