"""The API's OpenAPI 3 document: what `/api/v1` serves, checked against the served
answers by the tests (openapi-spec-validator, schemathesis)."""

from __future__ import annotations

from typing import Any

from storage.domain.states import RecordingState

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "a parameter or the body is not valid",
        401: "no valid credential (a bearer token, or a signed-in session)",
        403: "the credential may read but not do this (a viewer or read token acts on "
        "nothing; holds and forget need an admin or an admin token)",
        404: "no such recording, room or artifact",
        409: "refused in the recording's present state",
        503: "the broker did not take the task",
    }
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, texts[c]) for c in codes}


_ID = {
    "name": "recording_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 80},
}

_ROOM_ID = {
    "name": "room_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 120},
}

_NULLABLE_STRING = {"type": ["string", "null"]}
_HIT = {
    "type": "object",
    "required": ["recording_id", "speaker", "start_s", "end_s", "text", "player"],
    "properties": {
        "recording_id": {"type": "string"},
        "source": {"type": "string"},
        "speaker": {"type": "string"},
        "start_s": {"type": "number"},
        "end_s": {"type": "number"},
        "text": {"type": "string"},
        "room_id": _NULLABLE_STRING,
        "room_start_s": {"type": ["number", "null"]},
        "player": {"type": "string", "description": "the page whose player opens there"},
    },
}
_FLAG = {
    "type": "object",
    "required": ["id", "recording_id", "speaker", "start_s", "end_s", "match", "text"],
    "properties": {
        "id": {"type": "integer"},
        "recording_id": {"type": "string"},
        "speaker": {"type": "string"},
        "start_s": {"type": "number"},
        "end_s": {"type": "number"},
        "match": {"type": "string"},
        "text": {"type": "string"},
        "created_at": {"type": "string"},
        "reviewed_at": _NULLABLE_STRING,
        "reviewed_by": _NULLABLE_STRING,
        "player": {"type": "string"},
    },
}
_SUMMARY = {
    "type": "object",
    "required": ["id", "source", "state", "revision", "identity", "last_event_at"],
    "properties": {
        "id": {"type": "string"},
        "source": {"type": "string", "enum": ["gme", "css", "room"]},
        "state": {"type": "string"},
        "revision": {"type": "integer"},
        "identity": {"type": "object"},
        "created_at": _NULLABLE_STRING,
        "last_event_at": {"type": "string"},
        "settle_due_at": _NULLABLE_STRING,
        "error": _NULLABLE_STRING,
        "notification": _NULLABLE_STRING,
    },
}
_DETAIL = {
    "allOf": [
        {"$ref": "#/components/schemas/RecordingSummary"},
        {
            "type": "object",
            "required": ["segments", "runs"],
            "properties": {
                "current_run_id": _NULLABLE_STRING,
                "hold": {
                    "description": "the legal hold on it (null when none): nothing of it is "
                    "deleted while it stands",
                    "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Hold"}],
                },
                "room": {
                    "description": "a GME user's recording: the room it is a member of",
                    **_NULLABLE_STRING,
                },
                "segments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["seq_no", "state", "file_name", "recovered"],
                        "properties": {
                            "seq_no": {"type": "integer"},
                            "state": {"type": "string"},
                            "file_name": {"type": "string"},
                            "recovered": {"type": "boolean"},
                        },
                    },
                },
                "files": {
                    "description": "a CSS recording's files, in start-time order (only for "
                    "`source` css). `stream_param` and `callback_ext` are what the file's "
                    "callback carried, unchecked: `callback_ext` is an object when it was a "
                    "JSON object, else the text as it came",
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["file_id", "video_url", "stream_param", "callback_ext"],
                        "properties": {
                            "file_id": {"type": "string"},
                            "file_format": {"type": "string"},
                            "start_time": {"type": "integer"},
                            "end_time": {"type": "integer"},
                            "duration": {"type": "integer"},
                            "file_size": {"type": ["integer", "null"]},
                            "video_url": {"type": "string"},
                            "stream_param": _NULLABLE_STRING,
                            "callback_ext": {"type": ["object", "string", "null"]},
                        },
                    },
                },
                "runs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "revision", "state", "steps", "notifications"],
                        "properties": {
                            "id": {"type": "string"},
                            "revision": {"type": "integer"},
                            "state": {"type": "string"},
                            "from_step": _NULLABLE_STRING,
                            "attempts": {"type": "integer"},
                            "started_at": _NULLABLE_STRING,
                            "finished_at": _NULLABLE_STRING,
                            "steps": {"type": "array", "items": {"type": "object"}},
                            "error": _NULLABLE_STRING,
                            "manifest": _NULLABLE_STRING,
                            "artifacts": {"type": "array", "items": {"type": "object"}},
                            "notifications": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    ]
}
_PARTICIPANT = {
    "type": "object",
    "required": ["UserID", "recording_id", "offset_s", "duration_s"],
    "properties": {
        "UserID": {"type": "string"},
        "recording_id": {"type": "string"},
        "revision": {"type": "integer"},
        "offset_s": {"type": "number", "description": "where the user starts on the room's clock"},
        "duration_s": {"type": "number"},
    },
}
_ROOM = {
    "allOf": [
        {"$ref": "#/components/schemas/RecordingDetail"},
        {
            "type": "object",
            "required": ["members", "mixed_revision", "participants", "artifacts", "manifest"],
            "properties": {
                "source": {"type": "string", "enum": ["room"]},
                "members": {
                    "description": "every user's recording of the room, finished or not",
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["UserID", "recording_id", "state", "revision"],
                        "properties": {
                            "UserID": {"type": "string"},
                            "recording_id": {"type": "string"},
                            "state": {"type": "string"},
                            "revision": {"type": "integer"},
                        },
                    },
                },
                "mixed_revision": {
                    "description": "the newest archived revision (null before the first mix)",
                    "type": ["integer", "null"],
                },
                "participants": {
                    "description": "the users mixed into that revision, on the room's clock",
                    "type": "array",
                    "items": _PARTICIPANT,
                },
                "artifacts": {"type": "array", "items": {"type": "object"}},
                "manifest": _NULLABLE_STRING,
            },
        },
    ]
}
_HOLD = {
    "type": "object",
    "required": ["reason", "held_by", "held_at"],
    "properties": {
        "reason": {"type": "string"},
        "held_by": {"type": "string", "description": "who held it (user:NAME, token:NAME, cli)"},
        "held_at": {"type": "string"},
    },
}
_DONE = {
    "type": "object",
    "required": ["status", "detail"],
    "properties": {
        "status": {"type": "string", "enum": ["done"]},
        "detail": {"type": "string"},
    },
}


def _hold_paths(kind: str, parameter: dict[str, Any]) -> dict[str, Any]:
    """POST (hold) and DELETE (release) on a recording's or a room's hold."""
    admin: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "post": {
            "operationId": f"hold{kind}",
            "summary": f"Put the {kind.lower()} on legal hold: neither media retention nor "
            "a player's erasure deletes anything of it until it is released (admin)",
            "security": admin,
            "parameters": [parameter],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["reason"],
                            "properties": {
                                "reason": {"type": "string", "minLength": 1, "maxLength": 2000}
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(
                    {
                        "allOf": [
                            _DONE,
                            {
                                "type": "object",
                                "properties": {
                                    "reason": {"type": "string"},
                                    "held_by": {"type": "string"},
                                },
                            },
                        ]
                    },
                    "on hold (a second hold replaces the reason)",
                ),
                **_errors(400, 401, 403, 404),
            },
        },
        "delete": {
            "operationId": f"release{kind}",
            "summary": f"Lift the {kind.lower()}'s hold (admin)",
            "security": admin,
            "parameters": [parameter],
            "responses": {
                "200": _json(_DONE, "released"),
                **_errors(401, 403, 404, 409),
            },
        },
    }


_FORGET_REPORT = {
    "type": "object",
    "description": "What the erasure did (or, a dry run, would do); never the UserID",
    "required": [
        "player", "BizID", "dry_run", "state", "erasure", "recordings", "objects",
        "revisions", "rooms_remixed", "rooms_deleted", "rows", "kept",
    ],
    "properties": {
        "player": {"type": "string", "description": "the player's keyed hash, p_ and 32 hex"},
        "BizID": {"type": "integer"},
        "dry_run": {"type": "boolean"},
        "state": {"type": "string", "enum": ["planned", "running", "waiting", "done"]},
        "erasure": {"type": ["integer", "null"], "description": "the erasure's id"},
        "recordings": {"type": "array", "items": {"type": "string"}},
        "objects": {"type": "integer", "description": "archived objects deleted"},
        "revisions": {"type": "integer", "description": "revisions whose media went"},
        "rooms_remixed": {"type": "array", "items": {"type": "string"}},
        "rooms_deleted": {"type": "array", "items": {"type": "string"}},
        "rows": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "ledger rows changed per table",
        },
        "kept": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "reason", "hold_reason"],
                "properties": {
                    "id": {"type": "string"},
                    "reason": {"type": "string", "enum": ["hold"]},
                    "hold_reason": {"type": "string"},
                },
            },
        },
    },
}  # fmt: skip


def _forget_path() -> dict[str, Any]:
    admin: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "post": {
            "operationId": "forgetPlayer",
            "summary": "Forget a player (admin): every archived object of their recordings "
            "deleted, their rooms remixed without them, their UserID a keyed hash in the "
            "ledger, the recordings tombstones; what is held is kept until released",
            "security": admin,
            "parameters": [
                {
                    "name": "BizID",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                },
                {
                    "name": "UserID",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                },
            ],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "dry_run": {
                                    "type": "boolean",
                                    "description": "say what would go, change nothing",
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_FORGET_REPORT, "the plan (dry run): nothing changed"),
                "202": _json(
                    _FORGET_REPORT,
                    "the erasure is recorded and under way (or done); asking again reports it",
                ),
                **_errors(400, 401, 403),
                "503": _json(
                    {
                        "type": "object",
                        "required": ["error"],
                        "properties": {
                            "error": {"type": "string"},
                            "setting": {"type": "string"},
                        },
                    },
                    "RECPIPE_PLAYER_KEY is not set (outside the embedded default; `setting` "
                    "names it), or the broker did not answer",
                ),
            },
        }
    }


_ACCEPTED = {
    "type": "object",
    "required": ["status", "detail"],
    "properties": {
        "status": {"type": "string", "enum": ["accepted"]},
        "detail": {"type": "string"},
    },
}


def document() -> dict[str, Any]:
    read: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "recpipe console API",
            "version": "1",
            "description": "Recordings, rooms and the operator's actions. Reading needs a "
            "`read` token (or a signed-in viewer); acting needs an `operate` token (or an "
            "operator); holding, releasing and forgetting a player need an `admin` token (or an "
            "admin). Tokens are "
            "made with `recpipe tokens create NAME --scope read|operate|admin`.",
        },
        "servers": [{"url": "/"}],
        "security": read,
        "paths": {
            "/api/v1/recordings": {
                "get": {
                    "operationId": "listRecordings",
                    "summary": "Recordings, newest first, a page at a time",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {
                                "type": "string",
                                "enum": list(RecordingState.ALL),
                            },
                        },
                        {
                            "name": "source",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["gme", "css", "room"]},
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "description": "an ISO date/time (UTC unless it says) or an age: "
                            "30m, 2h, 3d",
                            "schema": {"type": "string", "maxLength": 64},
                        },
                        {
                            "name": "until",
                            "in": "query",
                            "description": "recordings whose first event is before this: "
                            "an ISO date/time or an age, as `since`",
                            "schema": {"type": "string", "maxLength": 64},
                        },
                        {
                            "name": "q",
                            "in": "query",
                            "description": "a recording id, TaskID, RoomID, UserID, or CSS "
                            "stream or file id, matched whole",
                            "schema": {"type": "string", "maxLength": 256},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "the `next` of the previous page",
                            "schema": {"type": "string", "maxLength": 256},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["recordings", "next"],
                                "properties": {
                                    "recordings": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/RecordingSummary"},
                                    },
                                    "next": _NULLABLE_STRING,
                                },
                            },
                            "a page of recordings; `next` is null on the last page",
                        ),
                        "414": {"description": "the request line is too long (over 8 KiB)"},
                        **_errors(400, 401),
                    },
                }
            },
            "/api/v1/recordings/{recording_id}": {
                "get": {
                    "operationId": "getRecording",
                    "summary": "One recording, as `recpipe status ID --json` prints it",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/RecordingDetail"}, "found"),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/rooms/{room_id}": {
                "get": {
                    "operationId": "getRoom",
                    "summary": "A room with its participants, revision and artifacts (what "
                    "`recpipe status ROOM_ID --json` prints)",
                    "parameters": [_ROOM_ID],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/RoomDetail"}, "found"),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/recordings/{recording_id}/reprocess": {
                "post": {
                    "operationId": "reprocessRecording",
                    "summary": "Run the recording's chain again from a step (a new revision), "
                    "or re-send its outcome (`notify`)",
                    "security": [{"bearer": []}],
                    "parameters": [_ID],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "from_step": {
                                            "type": "string",
                                            "enum": [
                                                "fetch",
                                                "concat",
                                                "transcode",
                                                "archive",
                                                "notify",
                                            ],
                                            "default": "fetch",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json(
                            {
                                "allOf": [
                                    _ACCEPTED,
                                    {
                                        "type": "object",
                                        "properties": {
                                            "from_step": {"type": "string"},
                                            "outcome": {"type": "string"},
                                            "run_id": _NULLABLE_STRING,
                                        },
                                    },
                                ]
                            },
                            "queued (a new run) or the outcome re-sent",
                        ),
                        **_errors(400, 401, 403, 404, 409, 503),
                    },
                }
            },
            "/api/v1/recordings/{recording_id}/redeliver": {
                "post": {
                    "operationId": "redeliverRecording",
                    "summary": "Send the current run's finally failed notifications again",
                    "security": [{"bearer": []}],
                    "parameters": [_ID],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "include_disabled": {"type": "boolean", "default": False}
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json(
                            {
                                "allOf": [
                                    _ACCEPTED,
                                    {
                                        "type": "object",
                                        "properties": {
                                            "notifications": {
                                                "type": "array",
                                                "items": {"type": "integer"},
                                            }
                                        },
                                    },
                                ]
                            },
                            "queued for delivery",
                        ),
                        **_errors(400, 401, 403, 404, 409, 503),
                    },
                }
            },
            "/api/v1/gme/tasks/{TaskID}/stop": {
                "post": {
                    "operationId": "stopGmeTask",
                    "summary": "Your backend stopped this GME task: its recordings are "
                    "finalized as soon as every started segment is uploaded",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "TaskID",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,32}$"},
                        }
                    ],
                    "responses": {
                        "202": _json(
                            {
                                "allOf": [
                                    _ACCEPTED,
                                    {
                                        "type": "object",
                                        "properties": {
                                            "TaskID": {"type": "string"},
                                            "recordings": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                        },
                                    },
                                ]
                            },
                            "sent to the workers",
                        ),
                        **_errors(400, 401, 403, 503),
                    },
                }
            },
            "/api/v1/recordings/{recording_id}/hold": _hold_paths("Recording", _ID),
            "/api/v1/rooms/{room_id}/hold": _hold_paths("Room", _ROOM_ID),
            "/api/v1/players/{BizID}/{UserID}/forget": _forget_path(),
            "/api/v1/holds": {
                "get": {
                    "operationId": "listHolds",
                    "summary": "Every standing legal hold, newest first",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["holds"],
                                "properties": {
                                    "holds": {
                                        "type": "array",
                                        "items": {
                                            "allOf": [
                                                {"$ref": "#/components/schemas/Hold"},
                                                {
                                                    "type": "object",
                                                    "required": ["id", "source", "state"],
                                                    "properties": {
                                                        "id": {"type": "string"},
                                                        "source": {"type": "string"},
                                                        "state": {"type": "string"},
                                                    },
                                                },
                                            ]
                                        },
                                    }
                                },
                            },
                            "the holds",
                        ),
                        **_errors(401),
                    },
                }
            },
            "/api/v1/recordings/{recording_id}/artifacts/{format}": {
                "get": {
                    "operationId": "getArtifact",
                    "summary": "The archived media of the newest archived revision; `Range` "
                    "is honoured (a local archive), or a redirect to a presigned URL (S3)",
                    "parameters": [
                        _ID,
                        {
                            "name": "format",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 16},
                        },
                        {
                            "name": "download",
                            "in": "query",
                            "description": "1: as an attachment",
                            "schema": {"type": "string", "enum": ["0", "1"]},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the media",
                            "content": {
                                "application/octet-stream": {},
                                "audio/*": {},
                                "video/*": {},
                            },
                        },
                        "206": {
                            "description": "the requested range",
                            "content": {
                                "application/octet-stream": {},
                                "audio/*": {},
                                "video/*": {},
                            },
                        },
                        "302": {"description": "a presigned URL (S3 archive)"},
                        "416": {"description": "the range lies outside the file"},
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/search": {
                "get": {
                    "operationId": "searchTranscripts",
                    "summary": "Transcript lines holding a word or phrase, best first (text "
                    "without spaces too: Korean, Japanese, Chinese)",
                    "description": "Best first: the shortest line holding the words, then in "
                    "the order the lines were stored. Pages follow on by keyset: `next` names "
                    "the last hit of this page, so lines stored between two requests neither "
                    "repeat a hit nor skip one.",
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "required": False,
                            "description": "the `next` of the page before; absent for the first",
                            "schema": {"type": "string", "maxLength": 256},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["hits", "next"],
                                "properties": {
                                    "hits": {"type": "array", "items": _HIT},
                                    "next": _NULLABLE_STRING,
                                },
                            },
                            "the hits of this page, and the cursor of the next",
                        ),
                        **_errors(400, 401),
                    },
                }
            },
            "/api/v1/flags": {
                "get": {
                    "operationId": "listFlags",
                    "summary": "Flag words (RECPIPE_FLAG_WORDS) found in transcripts, newest first",
                    "parameters": [
                        {
                            "name": "reviewed",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["true", "false"]},
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["flags"],
                                "properties": {"flags": {"type": "array", "items": _FLAG}},
                            },
                            "the flags",
                        ),
                        **_errors(400, 401),
                    },
                }
            },
            "/api/v1/flags/{flag_id}/review": {
                "post": {
                    "operationId": "reviewFlag",
                    "summary": "Mark a flag reviewed (recorded in the audit trail)",
                    "parameters": [
                        {
                            "name": "flag_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": _json(_FLAG, "reviewed (the first review is kept)"),
                        **_errors(401, 403, 404),
                    },
                }
            },
            "/api/v1/recordings/{recording_id}/transcript": {
                "get": {
                    "operationId": "getTranscript",
                    "summary": "The current revision's transcript: its state, files and "
                    "document (docs/transcripts.md)",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["state", "revision"],
                                "properties": {
                                    "state": {
                                        "type": "string",
                                        "enum": ["queued", "running", "ready", "failed"],
                                    },
                                    "revision": {"type": "integer"},
                                    "error": _NULLABLE_STRING,
                                    "json": _NULLABLE_STRING,
                                    "vtt": _NULLABLE_STRING,
                                    "summary": {"type": "object"},
                                    "document": {"type": ["object", "null"]},
                                },
                            },
                            "found",
                        ),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "this document")},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "recpipe_console"},
            },
            "schemas": {
                "Error": _ERROR,
                "RecordingSummary": _SUMMARY,
                "RecordingDetail": _DETAIL,
                "RoomDetail": _ROOM,
                "Hold": _HOLD,
            },
        },
    }
