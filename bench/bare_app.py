"""The webhook benchmark's baseline: a bare Flask app that reads the body and answers
200 {"code":0}, served by gunicorn with the same settings as `recpipe serve`.

    python -m gunicorn --chdir bench --worker-class gthread --workers 1 --threads 8 bare_app:app
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask("bare")


@app.post("/callbacks/gme")
def gme_callback() -> tuple[Response, int]:
    request.get_data()
    return jsonify(code=0), 200


@app.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify(status="ok"), 200
