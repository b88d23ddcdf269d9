"""Exceptions raised by mlm-export.

Every error derives from :class:`MLMExportError` and carries a ``hint`` saying what to do::

    MLMExportError
    +-- ConfigurationError (ValueError)       a bad argument or option
    +-- SourceError                           the model source cannot be used
    |   +-- ArtifactNotFoundError (FileNotFoundError)
    |   +-- UnsupportedSourceError
    |   +-- ArtifactLoadError                 truncated, corrupt or mismatching file
    |       +-- UntrustedPickleError          loading needs ``trust_pickle=True``
    |       +-- ChecksumMismatchError         file:size / file:checksum differ from the item
    |       +-- UnverifiedArtifactError       the item gives no checksum to verify the file against
    |   +-- DownloadError                     a remote Item/artifact cannot be fetched (refused, unreachable, HTTP)
    |       +-- DownloadLimitError            a download bound was hit (size cap, minimum rate, total timeout)
    +-- ProbeError                            the dry-run failed
    +-- DescriptionError (ValueError)         invalid model description
    +-- MissingDependencyError (ImportError)  an optional extra is not installed
    +-- SchemaNotFoundError                   a JSON schema is not available offline
    +-- ItemValidationError                   an item fails the schemas or semantic checks
    +-- OutputError                           cannot write the output
        +-- OutputExistsError (FileExistsError)
    +-- DataError                             the data given to predict cannot be used (no CRS, too small, nodata)
        +-- MissingBandError                  a band the model reads is not in the data
    +-- UnsupportedExpressionError            an Item's expression has a format that cannot be run safely
    +-- STACAPIError                          a STAC API is unreachable or answered with an error
        +-- AuthenticationError               401/403: credentials needed or refused
        +-- ItemExistsError                   409: the item exists (see ``if_exists``)
        +-- SearchLimitError                  a search hit its page, Item, size or time bound
"""

from __future__ import annotations

from typing import Any


def first_line(exc: BaseException, limit: int | None = 200) -> str:
    """The first line of ``exc``'s message (its type's name when it has none), cut to ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


class MLMExportError(Exception):
    """Base class of every error raised by mlm-export."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} Hint: {self.hint}"
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by state, not by calling ``__init__`` again (subclasses take required keyword arguments).

        An error a dask worker raises reaches the caller with its type, ``hint`` and every attribute.
        """
        return _restore, (type(self), self.args), dict(self.__dict__)


def _restore(cls: type[MLMExportError], args: tuple[Any, ...]) -> MLMExportError:
    """An unpickled :class:`MLMExportError` before its state (``message``, ``hint``...) is set back."""
    try:  # the builtin base's __new__ that cls(...) would use: Exception's, or OSError's for the file errors
        error = Exception.__new__(cls)
    except TypeError:
        error = cls.__new__(cls)
    error.args = args
    return error


class ConfigurationError(MLMExportError, ValueError):
    """A function argument or CLI option is invalid."""


class SourceError(MLMExportError):
    """The model source (object or file) cannot be used."""


class ArtifactNotFoundError(SourceError, FileNotFoundError):
    """A model file or one of its side files does not exist."""


class UnsupportedSourceError(SourceError):
    """The source is of a kind no adapter supports."""


class ArtifactLoadError(SourceError):
    """A model file exists but cannot be read (truncated, corrupt, wrong content)."""


class UntrustedPickleError(ArtifactLoadError):
    """Loading the file would unpickle arbitrary code; the caller did not opt in."""


class ChecksumMismatchError(ArtifactLoadError):
    """A file's size or checksum differs from the value recorded in the item."""


class UnverifiedArtifactError(ArtifactLoadError):
    """An Item's model asset has no ``file:checksum`` to verify the file against; ``verify=False`` was not given."""


class DownloadError(SourceError):
    """A remote Item or artifact cannot be fetched: unreachable, an HTTP error, or a refused redirect."""


class DownloadLimitError(DownloadError):
    """A download was stopped by one of its bounds (:class:`~mlm_export.download_limits.DownloadLimits`).

    Attributes:
        limit: the argument that sets the bound hit: ``"max_download_size"``, ``"min_download_rate"`` or
            ``"download_timeout"``.
        url: the URL being downloaded.
    """

    def __init__(self, message: str, *, limit: str, url: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.limit = limit
        self.url = url


class ProbeError(MLMExportError):
    """The dry-run of the model failed or produced unusable outputs."""


class DryRunLimitError(ProbeError):
    """The dry-run was stopped by one of its caps (``max_dry_run_memory=``, ``dry_run_timeout=``)."""


class DryRunMemoryError(DryRunLimitError, MemoryError):
    """The dry-run needs more memory than it has.

    Either its predicted peak is over ``max_dry_run_memory=`` (nothing was run), or a run ran out of memory (torch's
    ``OutOfMemoryError``, Python's ``MemoryError``, an onnxruntime allocation failure): reported, never taken as
    "the model does not accept this shape".
    """


class DryRunTimeoutError(DryRunLimitError, TimeoutError):
    """The dry-run ran longer than ``dry_run_timeout=`` seconds and was interrupted."""


class DescriptionError(MLMExportError, ValueError):
    """A model description violates its own invariants."""


class MissingDependencyError(MLMExportError, ImportError):
    """An optional dependency needed for this source is not installed."""


class SchemaNotFoundError(MLMExportError):
    """A JSON schema is neither in the schema directory nor downloadable."""


class ItemValidationError(MLMExportError):
    """An item does not pass validation; ``.problems`` holds every problem found."""

    def __init__(self, message: str, *, problems: list[Any] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems or [])


class OutputError(MLMExportError):
    """The output cannot be written."""


class OutputExistsError(OutputError, FileExistsError):
    """The output file exists and ``overwrite`` was not set."""


class STACAPIError(MLMExportError):
    """A STAC API cannot be reached or answered with an error (the message names the URL and quotes the server).

    Attributes:
        status: the HTTP status, or ``None`` when the server did not answer.
        published: ids of the Items that were stored before the error (publishing only).
    """

    def __init__(
        self, message: str, *, status: int | None = None, published: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.published = list(published or [])


class AuthenticationError(STACAPIError):
    """The STAC API answered 401/403: credentials are needed or refused."""


class SearchLimitError(STACAPIError):
    """A search hit one of its bounds (pages, Items, bytes of one answer, or time); the message names it."""


class ItemExistsError(STACAPIError):
    """The STAC API already holds the item (409) and ``if_exists="error"``."""


class UntrustedCodeError(ConfigurationError):
    """An Item names code to import (its ``model_class`` / ``mlm:entrypoint``) and ``trust_code`` is False."""


class DataError(MLMExportError):
    """The data given to ``predict`` cannot be used: no CRS, smaller than a fixed input, all nodata, out of range."""


class MissingBandError(DataError):
    """A band the model reads is not in the data; ``.missing`` and ``.available`` list the band names."""

    def __init__(self, message: str, *, missing: list[str], available: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.missing = list(missing)
        self.available = list(available)


class UnsupportedExpressionError(MLMExportError):
    """An Item's processing expression has a format that cannot be run safely here (it is never skipped)."""


class KnownAnswerMismatchError(ArtifactLoadError):
    """Rerun on the Item's published example (asset ``known-answer``), the model does not reproduce its output.

    Other weights, or a different pre/post-processing than the publisher's.
    """


class UploadTooLargeError(OutputError):
    """``mlm-export form``: an uploaded model file is larger than the form's cap (nothing of it is kept)."""


class FieldError(ConfigurationError):
    """``mlm-export form``: a form value cannot become an ``export_item`` argument; ``.field`` is the form field."""

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field
