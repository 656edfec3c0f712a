"""The published API contract: an OpenAPI 3.1 document built from the handlers themselves.

Each handler declares what it takes and answers with `@operation(...)`, naming the same pydantic
models it validates with; its scope comes from `@requires`. `openapi_document(app)` walks the
app's router, so the document lists exactly the routes that exist, and `tests/test_contract.py`
fails when a route has no `@operation`. How an endpoint joins the contract: CONTRIBUTING.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from service.api.auth import OPEN
from service.validation import MAX_ID

Handler = Callable[..., Any]
# A response is a model (JSON), a media type (a page, a CSV, plain text), None (no body), or a
# tuple of those when the client chooses (JSON or a printable page).
Answer = type[BaseModel] | str | None | tuple[type[BaseModel] | str, ...]

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# Statuses every operation may answer, whatever it does.
ALWAYS = (400, 503)
ERROR_MEANING = {
    400: "Malformed request: unreadable JSON, a bad query parameter or header",
    401: "No valid bearer token",
    403: "The token lacks the scope this operation needs (or a signature did not match)",
    404: "No such resource",
    409: "The request contradicts the current state",
    410: "Gone (an expired link)",
    413: "The body exceeds server.max_body_bytes",
    415: "Wrong media type for the body",
    422: "A field is invalid or missing; `field` names it",
    503: "The database cannot serve right now (unreachable, or SQLite locked); retry after Retry-After seconds",
}


class Error(BaseModel):
    """Every error Herald answers, from one middleware."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "invalid_field",
                    "detail": "responsible.email: not a valid email address: An email address must have an @-sign.",
                    "field": "responsible.email",
                }
            ]
        }
    )

    error: str
    detail: str
    field: str | None


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, Answer]
    body: type[BaseModel] | None = None
    body_media: str = JSON
    # Several media types for the body, each with a plain string schema (raw documents).
    raw_body: tuple[str, ...] = ()
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    tag: str = ""
    description: str = ""
    example: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)  # request headers: name → description


def operation(
    summary: str,
    responses: Mapping[int, Answer],
    *,
    body: type[BaseModel] | None = None,
    body_media: str = JSON,
    raw_body: tuple[str, ...] = (),
    query: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    tag: str = "",
    description: str = "",
    example: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare a handler's part of the contract (use it with @requires, above the handler)."""
    declared = Operation(
        summary, responses, body, body_media, raw_body, query, errors, tag, description, example, headers or {}
    )

    def mark(handler: Handler) -> Handler:
        handler.herald_operation = declared  # type: ignore[attr-defined]
        return handler

    return mark


def operation_of(handler: Any) -> Operation | None:
    return getattr(handler, "herald_operation", None)


def documented_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every route the app serves (HEAD copies of GET left out)."""
    return [(m, r.canonical, h) for m, r, h in _routes(app)]


def _routes(app: web.Application) -> list[tuple[str, Any, Any]]:
    """The API's routes. Console pages (service/web, marked `herald_page`) are HTML for people,
    signed in with a session cookie: they are not part of the API's contract."""
    return [
        (route.method, route.resource, route.handler)
        for route in app.router.routes()
        if route.method not in ("HEAD", "*")
        and route.resource is not None
        and not getattr(route.handler, "herald_page", False)
    ]


def _path_parameters(resource: Any) -> list[dict[str, Any]]:
    """Path parameters; a `{name:\\d+}` one is an integer a database id can hold."""
    pattern = resource.get_info().get("pattern")
    regex = pattern.pattern if pattern is not None else ""
    parameters = []
    for name in re.findall(r"\{(\w+)\}", resource.canonical):
        schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}
        if f"(?P<{name}>\\d+)" in regex:
            schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID, "examples": [1]}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    parameters = []
    for name, spec in schema.get("properties", {}).items():
        description = spec.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": spec}
        if description:
            parameter["description"] = description
        if spec.get("type") == "array" or any(s.get("type") == "array" for s in spec.get("anyOf", [])):
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
    return parameters


def _content(answer: Answer, refs: dict[type[BaseModel], str]) -> dict[str, Any] | None:
    if answer is None:
        return None
    content: dict[str, Any] = {}
    for one in answer if isinstance(answer, tuple) else (answer,):
        if isinstance(one, str):
            content[one] = {"schema": {"type": "string"}}
        else:
            content[JSON] = {"schema": {"$ref": refs[one]}}
    return content


def _responses(op: Operation, scope: str, has_path: bool, refs: dict[type[BaseModel], str]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, answer in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": _status_words(status)}
        content = _content(answer, refs)
        if content:
            entry["content"] = content
        if "Idempotency-Key" in op.headers and status < 300:
            entry["headers"] = {
                "Idempotent-Replayed": {
                    "description": "`true` when this is the stored answer to an earlier request with the same key",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            }
        answers[str(status)] = entry
    errors = set(ALWAYS) | set(op.errors)
    if scope != OPEN:
        errors |= {401, 403}
    if has_path:
        errors.add(404)
    if op.body is not None or op.raw_body:
        errors |= {413, 415, 422}
    if op.query is not None:
        errors.add(422)
    for status in sorted(errors - set(op.responses)):
        entry = {"description": ERROR_MEANING[status], "content": {JSON: {"schema": {"$ref": refs[Error]}}}}
        if status == 503:
            entry["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}}
        answers[str(status)] = entry
    return answers


def _status_words(status: int) -> str:
    return HTTPStatus(status).phrase


def _component_schemas(operations: list[Operation]) -> tuple[dict[type[BaseModel], str], dict[str, Any]]:
    models: dict[type[BaseModel], str] = {Error: "serialization"}
    for op in operations:
        if op.body is not None:
            models[op.body] = "validation"
        for answer in op.responses.values():
            for one in answer if isinstance(answer, tuple) else (answer,):
                if isinstance(one, type):
                    models.setdefault(one, "serialization")
    keys, definitions = models_json_schema(
        list(models.items()),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    refs = {model: keys[(model, mode)]["$ref"] for model, mode in models.items()}  # type: ignore[index]
    return refs, definitions.get("$defs", {})


def openapi_document(app: web.Application, title: str = "Herald", version: str = "1") -> dict[str, Any]:
    routes = [(m, r, h, operation_of(h)) for m, r, h in _routes(app)]
    declared = [op for *_, op in routes if op is not None]
    refs, schemas = _component_schemas(declared)
    paths: dict[str, dict[str, Any]] = {}
    for method, resource, handler, op in routes:
        if op is None:
            continue
        path = resource.canonical
        scope = getattr(handler, "herald_scope", "admin")
        parameters = _path_parameters(resource)
        entry: dict[str, Any] = {
            "operationId": f"{method.lower()}_{handler.__name__}",
            "summary": op.summary,
            "x-herald-scope": scope,
            "responses": _responses(op, scope, bool(parameters), refs),
        }
        if op.tag:
            entry["tags"] = [op.tag]
        description = op.description or (getattr(handler, "__doc__", None) or "").strip()
        scope_words = "Open: no token." if scope == OPEN else f"Scope: `{scope}` (an `admin` token may do anything)."
        entry["description"] = f"{scope_words}\n\n{description}".strip()
        entry["security"] = [] if scope == OPEN else [{"bearer": []}]
        if op.query is not None:
            parameters += _query_parameters(op.query, schemas)
        for name, words in op.headers.items():
            parameters.append(
                {
                    "name": name,
                    "in": "header",
                    "required": False,
                    "description": words,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
                }
            )
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            media: dict[str, Any] = {"schema": {"$ref": refs[op.body]}}
            if op.example is not None:
                media["example"] = op.example
            entry["requestBody"] = {"required": True, "content": {op.body_media: media}}
        elif op.raw_body:
            entry["requestBody"] = {
                "required": True,
                "content": {media: {"schema": {"type": "string"}} for media in op.raw_body},
            }
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Herald keeps a company accountable to its business partners when its systems fail. "
            'Every error has the shape `{"error", "detail", "field"}`.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
