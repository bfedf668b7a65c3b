"""Pinecone's Admin API: the API keys of one project (service account, OAuth client credentials).

What the rotation function needs: mint, find and revoke keys. The one data-plane call it makes with
a given key is :func:`vector_relay.pinecone.data_plane.check_api_key`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pinecone

from vector_relay.pinecone.errors import classify


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as the Admin API lists it: never its value."""

    key_id: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A key just minted. ``value`` is shown once by Pinecone; ``repr`` never shows it."""

    info: ApiKeyInfo
    value: str = field(repr=False)


def _key_info(model: Any) -> ApiKeyInfo:
    roles = tuple(str(getattr(role, "value", role)) for role in (model.roles or ()))
    return ApiKeyInfo(key_id=str(model.id), name=str(model.name or ""), roles=roles)


class PineconeKeyAdmin:
    """API keys of one project through Pinecone's Admin API. Errors are :class:`PineconeRequestError`."""

    def __init__(self, *, client_id: str, client_secret: str, host: str | None, oauth_url: str | None) -> None:
        try:
            self._admin = pinecone.Admin(
                client_id=client_id,
                client_secret=client_secret,
                host=host or None,
                oauth_url=oauth_url or None,
                source_tag="vector_relay",
            )
        except Exception as error:
            raise classify(error) from None

    def list_keys(self, project_id: str) -> list[ApiKeyInfo]:
        try:
            return [_key_info(model) for model in self._admin.api_keys.list(project_id=project_id)]
        except Exception as error:
            raise classify(error) from None

    def describe_key(self, key_id: str) -> ApiKeyInfo | None:
        """The key, or None when Pinecone does not know it (deleted, or from another project)."""
        try:
            return _key_info(self._admin.api_keys.describe(api_key_id=key_id))
        except Exception as error:
            if getattr(error, "status_code", None) == 404:
                return None
            raise classify(error) from None

    def create_key(self, project_id: str, name: str, roles: Sequence[str]) -> CreatedApiKey:
        try:
            created = self._admin.api_keys.create(project_id=project_id, name=name, roles=list(roles) or None)
        except Exception as error:
            raise classify(error) from None
        return CreatedApiKey(info=_key_info(created.key), value=created.value)

    def delete_key(self, key_id: str) -> bool:
        """Revoke the key; False when it was already gone (a retried step)."""
        try:
            self._admin.api_keys.delete(api_key_id=key_id)
        except Exception as error:
            if getattr(error, "status_code", None) == 404:
                return False
            raise classify(error) from None
        return True

    def close(self) -> None:
        self._admin.close()
