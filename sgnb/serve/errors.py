"""API errors and the JSON error body every route returns on failure."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from sgnb.serve.encoding import JSONResponse

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    500: "internal_server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error with an HTTP status; rendered as `{"error": {"message", "type", "code", "param"}}`."""

    def __init__(self, status_code: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param


def error_body(status_code: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI-shaped error body (SGLang clients read `error.message` too)."""
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status_code, "error"),
            "code": status_code,
            "param": param,
        }
    }


def error_response(status_code: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status_code, message, param), status_code=status_code)


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure (ours, routing 404/405, bad JSON, engine bugs) to the JSON error body."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status_code, exc.message, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Unknown route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"Internal server error: {type(exc).__name__}: {exc}")
