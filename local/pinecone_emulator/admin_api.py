"""The Admin API (a service account's bearer token): projects, API keys, organizations; and its OAuth token endpoint.

Secrets are shown once, when a key is created; a deleted key is remembered by digest so the counters
can still name it (:attr:`Emulator.revoked`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from pinecone_emulator.app import Emulator
from pinecone_emulator.auth import ROLES, TOKEN_LIFETIME_SECONDS, ApiKey, Project
from pinecone_emulator.wire import ApiError, Request, Response


def oauth_token(emulator: Emulator, request: Request) -> Response:
    """OAuth client credentials: the service account's id and secret for a bearer token."""
    content_type = request.header("Content-Type") or ""
    if "application/x-www-form-urlencoded" in content_type:
        form = parse_qs(request.body.decode(), keep_blank_values=True)
        body: dict[str, Any] = {name: values[0] for name, values in form.items()}
    else:
        try:
            body = request.json_object()
        except ApiError:
            raise ApiError(400, "Malformed token request", code="invalid_request") from None
    if body.get("grant_type") != "client_credentials":
        raise ApiError(400, "Only the client_credentials grant is supported", code="unsupported_grant_type")
    if not emulator.keyring.check_client(body.get("client_id"), body.get("client_secret")):
        raise ApiError(401, "Unauthorized", code="access_denied")
    token = emulator.keyring.mint_token()
    return Response.json(200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS})


# ------------------------------------------------------------------------------------------------ projects
def list_projects(emulator: Emulator, request: Request) -> Response:
    return Response.json(200, {"data": [emulator.keyring.project.to_json()]})


def describe_project(emulator: Emulator, request: Request, *, project_id: str) -> Response:
    return Response.json(200, _project(emulator, project_id).to_json())


def _project(emulator: Emulator, project_id: str) -> Project:
    if project_id != emulator.keyring.project.id:
        raise ApiError(404, f"Project {project_id} not found")
    return emulator.keyring.project


# ------------------------------------------------------------------------------------------------ API keys
def list_api_keys(emulator: Emulator, request: Request, *, project_id: str) -> Response:
    _project(emulator, project_id)
    return Response.json(200, {"data": [k.to_json() for k in emulator.keyring.list()]})


def create_api_key(emulator: Emulator, request: Request, *, project_id: str) -> Response:
    _project(emulator, project_id)
    body = request.json_object()
    name = _key_name(body.get("name"))
    roles = _roles(body["roles"]) if body.get("roles") is not None else ["ProjectEditor"]
    key, secret = emulator.keyring.create_key(name, roles)
    emulator.changed()
    return Response.json(201, {"key": key.to_json(), "value": secret})


def describe_api_key(emulator: Emulator, request: Request, *, key_id: str) -> Response:
    return Response.json(200, _key(emulator, key_id).to_json())


def update_api_key(emulator: Emulator, request: Request, *, key_id: str) -> Response:
    key = _key(emulator, key_id)
    body = request.json_object()
    if body.get("name") is not None:
        key.name = _key_name(body["name"])
    if body.get("roles") is not None:
        key.roles = _roles(body["roles"])
    emulator.changed()
    return Response.json(200, key.to_json())


def delete_api_key(emulator: Emulator, request: Request, *, key_id: str) -> Response:
    key = _key(emulator, key_id)
    emulator.keyring.delete(key_id)
    emulator.revoked[key.secret_digest] = key.id
    emulator.changed()
    return Response(status=202, body=b"", content_type=None)


def _key(emulator: Emulator, key_id: str) -> ApiKey:
    key = emulator.keyring.get(key_id)
    if key is None:
        raise ApiError(404, f"API key {key_id} not found")
    return key


def _roles(raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(r in ROLES for r in raw):
        raise ApiError(400, f"roles must be a non-empty array of: {', '.join(ROLES)}")
    return list(raw)


def _key_name(raw: object) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= 80:
        raise ApiError(400, "name must be a string of 1 to 80 characters")
    return raw


# ------------------------------------------------------------------------------------------- organizations
def list_organizations(emulator: Emulator, request: Request) -> Response:
    return Response.json(200, {"data": [_organization(emulator)]})


def describe_organization(emulator: Emulator, request: Request, *, organization_id: str) -> Response:
    if organization_id != emulator.config.organization_id:
        raise ApiError(404, f"Organization {organization_id} not found")
    return Response.json(200, _organization(emulator))


def _organization(emulator: Emulator) -> dict[str, Any]:
    return {
        "id": emulator.config.organization_id,
        "name": "emulator",
        "plan": "Standard",
        "payment_status": "Active",
        "created_at": "2026-01-01T00:00:00Z",
        "support_tier": "Free",
    }
