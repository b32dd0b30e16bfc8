"""The one exception type flarelens raises for bad input.

The CLI turns a :class:`FlareLensError` into one line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class FlareLensError(Exception):
    """Bad input or an unusable resource, described for the user (file, row, what to do)."""
