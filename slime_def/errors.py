"""Exception types that carry a user-facing message.

Every error raised for a user mistake (a bad spec string, a malformed file, an
out-of-range parameter) derives from :class:`SlimeDefError`, so the command line
can print its message on one line instead of a traceback.
"""


class SlimeDefError(ValueError):
    """A user-facing error: the message names the value and the fix."""


class SpecError(SlimeDefError):
    """A spec string such as ``gaussian(sigma=0.05)`` that cannot be parsed or resolved."""


class DatasetError(SlimeDefError):
    """An embedding dataset or input file that is missing, malformed or inconsistent."""


class ParameterError(SlimeDefError):
    """A component parameter outside its valid range."""
