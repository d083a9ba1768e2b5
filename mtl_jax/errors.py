"""The one exception type that entry points turn into a one-line message."""


class InputError(ValueError):
  """A problem with what the user asked for (a flag, a file), not a bug."""
