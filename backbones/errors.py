"""The one error class of the `backbones` package."""


class BackboneError(ValueError):
    """Something a user can get wrong: an unknown name or layer, a missing or bad weights file,
    an unavailable device. The message is one line naming the thing and the place."""


def reason(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception's message (or its type), shortened, to quote inside a
    one-line error."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
