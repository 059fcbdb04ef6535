"""The one exception type for user mistakes: the CLI prints its message as one line and exits 1."""


class VisretError(Exception):
    """A problem the user can fix (bad path, unknown name, bad parameter, corrupt index)."""
