"""How long the webhook takes to answer GME callbacks while the broker is unreachable.

Runs the Flask app in-process on a SQLite ledger in a temporary directory, with
RECPIPE_BROKER_URL pointing at a port nothing listens on, posts signed upload callbacks
and prints each answer's status and wall time. Nothing is asserted.

    python bench/intake_broker_down.py [--callbacks 10]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import socket
import statistics
import tempfile
import time

from foundation.config import Settings
from recpipe.webapp import create_app
from storage.ledger import Ledger

BIZ, KEY, TASK = 1400000000, "bench-key", 446946705284000999


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(broker_url: str, callbacks: int) -> list[float]:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings.from_env(
            {
                "RECPIPE_DATA_DIR": data,
                "RECPIPE_BROKER_URL": broker_url,
                "RECPIPE_GME_SECRET_KEYS": f"{BIZ}={KEY}",
            }
        )
        ledger = Ledger(settings.database_url)
        ledger.migrate()
        client = create_app(settings, ledger=ledger).test_client()
        times = []
        for seq in range(callbacks):
            body = json.dumps(
                {
                    "BizID": BIZ, "RoomID": "1", "UserID": "1", "TaskID": TASK, "RecordMode": 1,
                    "Timestamp": int(time.time()), "EventType": 3,
                    "Detail": {"SeqNo": seq, "FileName": f"b/{seq}_{TASK}_audio.mp3"},
                }
            ).encode()  # fmt: skip
            signature = base64.b64encode(hmac.new(KEY.encode(), body, hashlib.sha1).digest())
            started = time.perf_counter()
            response = client.post(
                "/callbacks/gme",
                data=body,
                headers={"Content-Type": "application/json", "Signature": signature.decode()},
            )
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"callback {seq}: HTTP {response.status_code}")
        ledger.dispose()
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    for scheme in ("redis://127.0.0.1:{port}/0", "amqp://127.0.0.1:{port}//"):
        url = scheme.format(port=closed_port())
        times = run(url, args.callbacks)
        print(
            f"{url.split(':')[0]:<6} broker down: {len(times)} callbacks, all 200; "
            f"first {times[0] * 1000:.0f} ms, median {statistics.median(times) * 1000:.1f} ms, "
            f"max {max(times) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
