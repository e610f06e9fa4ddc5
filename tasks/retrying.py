"""The chains' one error policy: which errors are retried, and how long a retry waits.

Transient errors, and only these, are retried (`is_transient`):
- the network: a connection refused, reset or timed out (the standard library's,
  requests', botocore's);
- the object store answering 5xx or "slow down" (throttling);
- the ledger's connection errors (`LedgerUnavailableError`);
- the broker being unavailable (`BrokerUnavailableError`, kombu's `OperationalError`);
- the scratch disk full: other runs' scratch goes as they end.

Anything else is a bug or a request that cannot succeed (a `TypeError`, a `KeyError`, an
S3 403): the run fails at once, with its traceback in the log and one line in the ledger.
A media error (`MediaError`: the recording itself) is not an error of the chain at all:
the recording fails with its message.

Every retry waits as `wait` says: 2, 4, 8, 16 s ... up to a cap, plus up to 2 s at random
(the retries of many runs stopped by one outage spread out).
"""

from __future__ import annotations

import errno

import requests
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError
from kombu.exceptions import OperationalError as BrokerOperationalError
from tenacity import RetryCallState, Retrying, wait_exponential, wait_random
from tenacity.wait import wait_base

from foundation.queues import BrokerUnavailableError
from storage.ledger import LedgerUnavailableError
from storage.objectstore import StoreUnavailableError

TRANSIENT: tuple[type[BaseException], ...] = (
    # the network
    ConnectionError,
    TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
    BotoConnectionError,
    HTTPClientError,  # a read timed out, a connection closed or a body cut short
    IncompleteReadError,
    # the ledger's connection errors
    LedgerUnavailableError,
    # the broker being unavailable
    BrokerUnavailableError,
    BrokerOperationalError,
)
# S3's answers that mean "not now" rather than "no" (besides any 5xx).
THROTTLING = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
     "TooManyRequests", "TooManyRequestsException", "RequestTimeout"}
)  # fmt: skip

# The longest wait between two tries of the chain's own dependencies (the ledger, the
# stores, the broker): an outage is noticed this soon after it ends.
CAP_SECONDS = 30.0
JITTER_SECONDS = 2.0


def is_transient(exc: BaseException) -> bool:
    """Worth trying again later: see the module's list."""
    if isinstance(exc, StoreUnavailableError):
        # The store's error carries the vendor's; none (an https source's 5xx) is transient.
        return exc.__cause__ is None or _store_answer_is_transient(exc.__cause__)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, TRANSIENT)


def _store_answer_is_transient(cause: BaseException) -> bool:
    if isinstance(cause, ClientError):
        status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(cause.response.get("Error", {}).get("Code", ""))
        return status >= 500 or code in THROTTLING
    return is_transient(cause)


def wait(cap: float = CAP_SECONDS) -> wait_base:
    """The back-off of every retry loop, as a tenacity wait."""
    return wait_exponential(multiplier=2, max=cap) + wait_random(0, JITTER_SECONDS)


def countdown(retries: int, cap: float = CAP_SECONDS) -> float:
    """How long a task waits before its retry number `retries` + 1 (Celery's countdown)."""
    return float(wait(cap)(_attempt(retries + 1)))


def longest_countdown(retries: int, cap: float = CAP_SECONDS) -> float:
    """The most `countdown(retries, cap)` can be."""
    return float(wait_exponential(multiplier=2, max=cap)(_attempt(retries + 1))) + JITTER_SECONDS


def _attempt(number: int) -> RetryCallState:
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = number
    return state


def describe_fault(exc: BaseException) -> str:
    """One line a user can act on, naming the dependency that failed; for anything else
    (a bug) its type and first line."""
    if isinstance(exc, LedgerUnavailableError):
        return f"ledger unavailable: {_first_line(exc)}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"scratch disk full: {_first_line(exc)}"
    if isinstance(exc, StoreUnavailableError):
        return f"object store unavailable: {_first_line(exc)}"
    if isinstance(exc, BrokerUnavailableError | BrokerOperationalError):
        return f"broker unavailable: {_first_line(exc)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
