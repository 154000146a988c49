"""Google client exceptions translated into the pipeline's transient errors, in one place."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as gexc

from paynow.domain.errors import (
    Contention,
    DeadlineExceeded,
    DependencyUnavailable,
    PipelineError,
    TransientError,
)


def as_transient(exc: BaseException, what: str) -> TransientError:
    """The transient error a failed call to ``what`` (a service name) stands for."""
    if isinstance(exc, gexc.Aborted | gexc.Conflict) or (
        isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted)
    ):
        return Contention(f"{what}: transaction contention")
    if isinstance(exc, gexc.DeadlineExceeded | concurrent.futures.TimeoutError | TimeoutError):
        return DeadlineExceeded(f"{what}: deadline exceeded")
    name = type(exc).__name__
    return DependencyUnavailable(f"{what} unavailable ({name})")


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Run a block of client calls; any client failure leaves as a ``TransientError``.

    Our own ``PipelineError``s pass through untouched. Unexpected client errors
    (permission, invalid argument) are transient too: retrying after an
    operator fixes them loses nothing, dropping the event would.
    """
    try:
        yield
    except PipelineError:
        raise
    except (
        gexc.GoogleAPIError,
        concurrent.futures.TimeoutError,
        TimeoutError,
        ConnectionError,
        ValueError,
    ) as exc:
        raise as_transient(exc, what) from exc
