"""The one error class of the augment package."""


class AugmentError(ValueError):
    """Anything a user can get wrong in a config or an input; the message is one line."""
