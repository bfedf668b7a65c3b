"""Rotation function: Secrets Manager calls it once per step to rotate the Pinecone API key."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay.keys.rotation import RotationEvent, run_rotation_step

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    rotation = RotationEvent.model_validate(event)
    logger.append_keys(step=rotation.step, secret_id=rotation.secret_id)
    run_rotation_step(rotation)
