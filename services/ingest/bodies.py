"""Reading webhook bodies ourselves: the size limit first, then JSON, forms or multipart; and their OpenAPI."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.formparsers import MultiPartParser

from services.ingest.domain import Blob, clean_strings, file_name, media_type_of
from shared.http import ApiError

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over `limit` (before any parsing)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the body is larger than this endpoint takes ({limit} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the body is larger than this endpoint takes ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


# a JSON escape that may stand for half a surrogate pair (\uD800-\uDFFF)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes, model: type[M]) -> M:
    # pydantic parses and validates in one pass, at a third of json.loads + clean_strings +
    # model_validate. It is only the fast way to the same answer: a body it refuses, or one
    # that may hold a lone surrogate (which must be cleaned), takes the path below, so every
    # error a sender sees and every message published is what it was.
    if not _SURROGATE_ESCAPE.search(raw):
        try:
            return model.model_validate_json(raw)
        except ValueError:  # ValidationError, or the rare body pydantic cannot take as JSON at all
            pass
    try:
        data = clean_strings(json.loads(raw))
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    return validate(data, model)


def validate(data: Any, model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # the same answer FastAPI gives for a body it parsed itself
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


def form_pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except ValueError as exc:  # not UTF-8, or too many fields
        raise ApiError(422, "invalid_form", f"the form cannot be read: {exc}") from exc


async def multipart_form(request: Request, raw: bytes) -> tuple[dict[str, str], list[Blob]]:
    """The text fields of a multipart form, and its uploaded files."""

    async def once() -> AsyncGenerator[bytes, None]:
        yield raw

    try:
        form = await MultiPartParser(
            request.headers, once(), max_files=20, max_fields=50, max_part_size=len(raw) + 1
        ).parse()
    except Exception as exc:  # malformed multipart, an undecodable field
        raise ApiError(422, "invalid_form", f"the form cannot be read: {exc}") from exc
    fields, files = {}, []
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields[name] = value
            continue
        if value.filename:  # a file input left empty sends a part without a file name
            files.append(Blob(await value.read(), media_type_of(value.content_type), file_name(value.filename)))
        await value.close()
    return clean_strings(fields), files


def body_schema(model: type[BaseModel], media_types: tuple[str, ...] = ("application/json",)) -> dict[str, Any]:
    """The request body for the OpenAPI document (these endpoints read their bodies themselves)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {t: {"schema": inline(schema)} for t in media_types}}}
