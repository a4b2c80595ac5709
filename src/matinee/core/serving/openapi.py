"""The OpenAPI document of the serving endpoints (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ID = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}
_IDS = {"type": "array", "items": _ID}
_NUMBERS = {"type": "array", "items": {"type": "number"}}
_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"},
                   "field": {"type": ["string", "null"]}},
}

_SCHEMAS: dict[str, Any] = {
    "Error": _ERROR,
    "RecsRequest": {
        "type": "object",
        "required": ["user_id"],
        "additionalProperties": False,
        "properties": {
            "user_id": _ID,
            "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
            "exclude": _IDS,
            "candidates": _IDS,
        },
    },
    "RecsResponse": {
        "type": "object",
        "properties": {
            "user_id": _ID, "items": _IDS, "scores": _NUMBERS, "fallback": {"type": "boolean"},
            "model": {"type": "string"}, "version": {"type": "integer"}, "arm": {"type": "string"},
            "decision_id": {"type": ["string", "null"]},
            "teams": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "versions": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ArtworkRequest": {
        "type": "object",
        "required": ["user_id", "context", "titles"],
        "additionalProperties": False,
        "properties": {
            "user_id": _ID,
            "context": _NUMBERS,
            "titles": {
                "type": "array", "minItems": 1,
                "items": {
                    "type": "object", "required": ["title_id", "variants"], "additionalProperties": False,
                    "properties": {
                        "title_id": _ID,
                        "variants": {
                            "type": "array", "minItems": 1,
                            "items": {"type": "object", "required": ["id"], "additionalProperties": False,
                                      "properties": {"id": _ID, "features": _NUMBERS}},
                        },
                    },
                },
            },
        },
    },
    "ArtworkResponse": {
        "type": "object",
        "properties": {
            "user_id": _ID, "model": {"type": "string"}, "version": {"type": "integer"}, "arm": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {"type": "object", "properties": {
                    "title_id": _ID, "variant_id": _ID,
                    "propensity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    "decision_id": {"type": "string"},
                }},
            },
        },
    },
    "FeedbackRequest": {
        "type": "object",
        "required": ["decision_id", "reward"],
        "additionalProperties": False,
        "properties": {"decision_id": {"type": "string", "minLength": 1},
                       "event": {"type": "string", "default": "reward"}, "reward": {"type": "number"}},
    },
}


def _batch(item: str, results: str) -> tuple[dict[str, Any], dict[str, Any]]:
    request = {"type": "object", "required": ["requests"], "additionalProperties": False,
               "properties": {"requests": {"type": "array", "minItems": 1, "maxItems": 1000,
                                           "items": {"$ref": f"#/components/schemas/{item}"}}}}
    response = {"type": "object", "properties": {
        "results": {"type": "array", "items": {"$ref": f"#/components/schemas/{results}"}}}}
    return request, response


_SCHEMAS["RecsBatchRequest"], _SCHEMAS["RecsBatchResponse"] = _batch("RecsRequest", "RecsResponse")
_SCHEMAS["ArtworkBatchRequest"], _SCHEMAS["ArtworkBatchResponse"] = _batch("ArtworkRequest", "ArtworkResponse")


def _ref(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _post(summary: str, request: str, response: str | None) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if response:
        ok.update(_ref(response))
    errors = {code: {"description": text, **_ref("Error")} for code, text in (
        ("400", "Malformed JSON"), ("404", "Unknown decision or endpoint not served"),
        ("413", "Body too large"), ("422", "Invalid field"), ("503", "Model not loaded, or overloaded (see Retry-After)"))}
    return {"post": {"summary": summary, "requestBody": {"required": True, **_ref(request)},
                     "responses": {"200": ok, **errors}}}


def _get(summary: str, media: str = "application/json") -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": {"description": "OK", "content": {media: {}}}}}}


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document, with ``version`` as the API version."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "matinee serving", "version": version},
        "paths": {
            "/recommendations": _post("Top-k items for a member", "RecsRequest", "RecsResponse"),
            "/recommendations/batch": _post("Several recommendation requests in one call", "RecsBatchRequest",
                                            "RecsBatchResponse"),
            "/artwork": _post("One artwork variant per title for a member", "ArtworkRequest", "ArtworkResponse"),
            "/artwork/batch": _post("Several artwork requests in one call", "ArtworkBatchRequest",
                                    "ArtworkBatchResponse"),
            "/feedback": _post("Feedback on a decision", "FeedbackRequest", None),
            "/healthz": _get("The process is up"),
            "/readyz": _get("Every model is loaded (503 otherwise)"),
            "/metrics": _get("Prometheus metrics", "text/plain"),
            "/openapi.json": _get("This document"),
        },
        "components": {"schemas": _SCHEMAS},
    }
