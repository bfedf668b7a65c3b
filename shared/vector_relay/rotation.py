"""Secrets Manager rotation of the Pinecone API key: the event it receives and the four steps.

This build parses and checks the rotation event; the steps themselves (create a key through the
Admin API, test it, promote it, revoke the old one) are not enabled yet, so a rotation fails
before touching the secret and Secrets Manager leaves the current key in place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vector_relay.errors import ConfigurationError


class RotationEvent(BaseModel):
    """The event Secrets Manager sends a rotation function, once per step."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    step: Literal["createSecret", "setSecret", "testSecret", "finishSecret"] = Field(alias="Step")
    secret_id: str = Field(alias="SecretId", min_length=1)
    client_request_token: str = Field(alias="ClientRequestToken", min_length=1)


class RotationNotEnabledError(ConfigurationError):
    """Rotation steps are not part of this build; the secret is left as it is."""


def run_rotation_step(event: RotationEvent) -> None:
    """Run one rotation step. In this build every step refuses, leaving the secret unchanged."""
    raise RotationNotEnabledError(f"rotation step {event.step} is not enabled in this build; the secret is unchanged")
