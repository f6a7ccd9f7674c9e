"""The one error a user of anomalib_lite can cause.

Everything a user can get wrong (a bad path, a bad data spec, a NaN in an array, a bundle that does
not fit the data) raises :class:`AnomalyError` with one line that names the thing and the place.
It is a ``ValueError`` so generic callers can still catch it; ``cli.py`` turns it into a message on
stderr and exit code 2. Any other exception is a bug.
"""


class AnomalyError(ValueError):
    """Bad input to anomalib_lite: the message says what is wrong and where."""


class DistributedError(RuntimeError):
    """Another process of a multi-process run (torchrun) failed or stopped answering: not bad
    input here, so the CLI prints this one line and exits with 1."""


def _not_fitted_base():
    from sklearn.exceptions import NotFittedError as SkNotFitted

    return SkNotFitted


class NotFittedError(AnomalyError, _not_fitted_base()):
    """A detector used before ``fit``: an AnomalyError, and scikit-learn's NotFittedError."""


def _user_errors() -> tuple[type[Exception], ...]:
    from augment import AugmentError
    from backbones import BackboneError

    return (AnomalyError, BackboneError, AugmentError)


#: every error a user can cause, in anomalib_lite and the packages it builds on (all ValueErrors)
USER_ERRORS = _user_errors()
