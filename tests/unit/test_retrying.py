"""The chains' one error policy (`tasks.retrying`): which errors are transient, named in
one place, and the one back-off every retry loop waits by."""

from __future__ import annotations

import errno

import pytest
import requests
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from kombu.exceptions import OperationalError as BrokerOperationalError

from foundation.queues import BrokerUnavailableError
from storage.ledger import LedgerUnavailableError
from storage.objectstore import StoreUnavailableError
from tasks import retrying
from tasks.media.tools import MediaError
from tasks.notify import delivery


def s3_answer(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


def from_store(cause: BaseException | None) -> StoreUnavailableError:
    """As `storage.objectstore` raises it: the vendor's error as its cause."""
    error = StoreUnavailableError(f"s3://bucket/key: {cause}")
    error.__cause__ = cause
    return error


TRANSIENT = {
    "connection refused": ConnectionRefusedError(111, "Connection refused"),
    "socket timeout": TimeoutError("timed out"),
    "requests connect": requests.ConnectionError("connection reset"),
    "requests timeout": requests.ReadTimeout("read timed out"),
    "S3 500": from_store(s3_answer(500, "InternalError")),
    "S3 503 slow down": from_store(s3_answer(503, "SlowDown")),
    "S3 throttled": from_store(s3_answer(400, "ThrottlingException")),
    "S3 unreachable": from_store(EndpointConnectionError(endpoint_url="http://s3")),
    "S3 read timeout": from_store(ReadTimeoutError(endpoint_url="http://s3")),
    "S3 body cut short": from_store(ResponseStreamingError(error="cut")),
    "https source 5xx": from_store(None),
    "ledger": LedgerUnavailableError("connection refused"),
    "broker": BrokerUnavailableError("no answer"),
    "kombu": BrokerOperationalError("[Errno 111] Connection refused"),
    "scratch disk full": OSError(errno.ENOSPC, "No space left on device"),
}
NOT_TRANSIENT = {
    "a bug: TypeError": TypeError("unsupported operand"),
    "a bug: KeyError": KeyError("seq_no"),
    "a bug: AttributeError": AttributeError("'NoneType' object has no attribute 'id'"),
    "S3 403": from_store(s3_answer(403, "AccessDenied")),
    "S3 400": from_store(s3_answer(400, "InvalidArgument")),
    "S3 credentials": from_store(NoCredentialsError()),
    "a missing object": FileNotFoundError("s3://bucket/key does not exist"),
    "permission": PermissionError(13, "Permission denied"),
    "media": MediaError("segment 3 is not an audio file"),
}


@pytest.mark.parametrize("exc", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_known_transient_errors_are_retried(exc: BaseException):
    assert retrying.is_transient(exc)


@pytest.mark.parametrize("exc", NOT_TRANSIENT.values(), ids=NOT_TRANSIENT.keys())
def test_everything_else_is_not_retried(exc: BaseException):
    assert not retrying.is_transient(exc)


def test_a_bug_is_told_in_one_line_with_its_type():
    exc = KeyError("seq_no")
    assert retrying.describe_fault(exc) == "KeyError: 'seq_no'"
    multi = ValueError("first line\n  second line\nthird")
    assert retrying.describe_fault(multi) == "ValueError: first line"
    assert retrying.describe_fault(BrokerUnavailableError("gone")) == "broker unavailable: gone"


@pytest.mark.parametrize("retries", range(10))
def test_one_back_off_bounded_by_its_longest(retries: int):
    for cap in (retrying.CAP_SECONDS, delivery.BACKOFF_CAP_SECONDS):
        wait = retrying.countdown(retries, cap=cap)
        base = min(cap, 2.0 * 2**retries)
        assert base <= wait <= retrying.longest_countdown(retries, cap=cap) == base + 2


def test_a_notification_is_tried_at_once_then_by_its_receivers_back_off():
    assert delivery.next_attempt_by(0) == 0
    assert [delivery.next_attempt_by(n) for n in (1, 2, 3)] == [4.0, 6.0, 10.0]
    assert delivery.next_attempt_by(20) == delivery.BACKOFF_CAP_SECONDS + 2
    assert 2 <= delivery.next_attempt_in(1) <= 4
