"""The REST API's one error shape, ``{"error": {"code": ..., "message": ...}}``, and its place in
the OpenAPI document.

Routes answer their own errors in this shape. :func:`install_error_handling` gives it to what
the framework answers itself (a request that fails validation, an unknown route or method, an
``HTTPException``) and makes the document declare it: every operation may answer 503 (the
service is starting, stopping or lacks a store it needs), every operation that takes an API key
401 and 403, and every error status a route declares without a body gets this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

# The code of an error the framework raises without one of its own, by HTTP status.
_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}
# Statuses whose body is always an Error, when a route declares them without one.
_ERROR_STATUSES = ("400", "401", "403", "404", "405", "409", "413", "422", "503", "507")
_DEFAULT_DESCRIPTIONS = {
    "401": "No valid API key.",
    "403": "The key lacks the scope this call needs.",
    "422": "The request is not valid (code invalid_request).",
    "503": "The service is starting or stopping, or a store it needs is down: retry later.",
}
# FastAPI's own validation-error body (and the schema only it uses), which this API never answers.
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, as a fixed code to act on (for example not_found).")
    message: str = Field(description="What went wrong, for a person to read.")


class Error(BaseModel):
    """Every error answer of the API. Some carry more fields beside ``code`` and ``message``."""

    error: ErrorDetail


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Validation errors as one line: where (``body.questions.0.text``) and what, without the
    value sent (it may be a candidate's)."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'request'}: {error['msg']}"
                     for error in errors)


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    if isinstance(exc.detail, dict) and "code" in exc.detail:  # raised with the error itself (authentication)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    code = _CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "invalid_request", describe_errors(exc.errors()))


def install_error_handling(app: FastAPI) -> None:
    """Answer the framework's errors in the API's shape, and declare that shape in ``app``'s document."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # built once (again after routers are added)
            declare_errors(generate())
        return app.openapi_schema

    app.openapi = openapi


def declare_errors(document: dict[str, Any]) -> None:
    """Declare :class:`Error` in an OpenAPI ``document`` (changed in place) as the module docstring says."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["Error"] = error_schema
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            needed = ["503"] + (["401", "403"] if operation.get("security") else [])
            for status in needed:
                responses.setdefault(status, {"description": _DEFAULT_DESCRIPTIONS[status]})
            for status, response in responses.items():
                if status in _ERROR_STATUSES and _says_nothing_or_fastapis(response):
                    response["content"] = content
                    if response.get("description") == "Validation Error":
                        response["description"] = _DEFAULT_DESCRIPTIONS["422"]
            operation["responses"] = dict(sorted(responses.items()))
    if _FASTAPI_VALIDATION_REF not in str(document.get("paths", {})):
        for name in _FASTAPI_VALIDATION:
            schemas.pop(name, None)


def _says_nothing_or_fastapis(response: Mapping[str, Any]) -> bool:
    """True for a response declared without a body, or with FastAPI's validation-error body."""
    body = response.get("content")
    return not body or body.get("application/json", {}).get("schema") == {"$ref": _FASTAPI_VALIDATION_REF}
