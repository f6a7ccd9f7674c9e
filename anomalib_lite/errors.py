"""The one error a user of anomalib_lite can cause.

Everything a user can get wrong (a bad path, a bad data spec, a NaN in an array, a bundle that does
not fit the data) raises :class:`AnomalyError` with one line that names the thing and the place.
It is a ``ValueError`` so generic callers can still catch it; ``cli.py`` turns it into a message on
stderr and exit code 2. Any other exception is a bug.
"""


#: the most characters of untrusted text (a bundle's field, a name read from a file) a message shows
SHOWN = 200


def plural(n: int, noun: str) -> str:
    """``1 sample``, ``2 samples``: a count and its noun, in every line the toolkit prints."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def shown(value, limit: int = SHOWN) -> str:
    """Untrusted text as a message may show it: control characters (newlines, escapes, NUL) and
    other unprintable ones escaped as ``\\xNN`` / ``\\uNNNN``, cut to ``limit`` characters with
    "..." (so a field cannot forge lines, move the cursor or flood the terminal). Non-strings are
    shown by their ``repr``, cut the same way."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 4 * limit:  # never escape more than can be shown
        text = text[: 4 * limit]
        cut = True
    else:
        cut = False
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if cut or len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class AnomalyError(ValueError):
    """Bad input to anomalib_lite: the message says what is wrong and where."""


class DistributedError(RuntimeError):
    """Another process of a multi-process run (torchrun) failed or stopped answering: not bad
    input here, so the CLI prints this one line and exits with 1."""


def __getattr__(name: str):
    """``NotFittedError`` (which subclasses scikit-learn's) and ``USER_ERRORS`` (which include the
    errors of ``backbones`` and ``augment``) are made on first use: importing this module imports
    neither scikit-learn nor torch, so the command line can report errors without them."""
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError as SkNotFitted

        class NotFittedError(AnomalyError, SkNotFitted):
            """A detector used before ``fit``: an AnomalyError, and scikit-learn's NotFittedError."""

        NotFittedError.__module__, NotFittedError.__qualname__ = __name__, "NotFittedError"
        value = NotFittedError
    elif name == "USER_ERRORS":
        from augment import AugmentError
        from backbones import BackboneError

        #: every error a user can cause, in anomalib_lite and the packages it builds on (all ValueErrors)
        value = (AnomalyError, BackboneError, AugmentError)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def user_errors_loaded() -> tuple[type[Exception], ...]:
    """The user-error classes of the packages imported so far (an error of a package that was never
    imported cannot have been raised): what the command line catches, without importing more."""
    import sys

    found = [AnomalyError]
    for module, name in (("backbones.errors", "BackboneError"), ("augment.errors", "AugmentError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)
