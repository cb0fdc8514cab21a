"""The one error of the rule language."""


class RuleError(Exception):
    """A rule that cannot be loaded; ``str()`` is the full message with its location."""
