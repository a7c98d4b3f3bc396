"""The one exception type of the edge runtime, in its own module so that every edge module can raise it."""


class EdgeError(ValueError):
    """A model, metadata file or input the edge runtime cannot use; the message says which and why."""
