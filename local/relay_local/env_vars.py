"""SAM ``--env-vars`` for users with Docker: ``sam local invoke`` against a ``make up`` stack.

``env.local.json`` at the repository root is this module's output (``python -m relay_local
env-vars > env.local.json``; a test keeps the two equal). It assumes ``make up`` on its default
ports (moto on 4566, the emulator on 5080), both on 127.0.0.1, so the container must share the
host's network: ``sam local invoke IngestFunction -e events/ingest-upsert.json --env-vars
env.local.json --docker-network host``. The values are what the local stack gives the functions,
with the secrets named by name (moto's ARNs end in a random suffix; Secrets Manager accepts names).
"""

from __future__ import annotations

from typing import Any

from relay_local.cloudformation import ACCOUNT_ID, LocalTemplate, PhysicalResource
from relay_local.sample_deployment import INDEX_NAME, local_parameters
from relay_local.stack import DEFAULT_AWS_PORT, DEFAULT_PINECONE_PORT, oauth_url

AWS_ENDPOINT = f"http://127.0.0.1:{DEFAULT_AWS_PORT}"
PINECONE_URL = f"http://127.0.0.1:{DEFAULT_PINECONE_PORT}"


def sam_env_vars() -> dict[str, dict[str, str]]:
    t = LocalTemplate(parameters=local_parameters(f"{PINECONE_URL}/data/{INDEX_NAME}"))
    for logical_id in t.resources_of_type("AWS::SQS::Queue"):
        name = t.default_name(logical_id)
        url = f"{AWS_ENDPOINT}/{ACCOUNT_ID}/{name}"
        t.physical[logical_id] = PhysicalResource(url, {"Arn": t.arn("sqs", name), "QueueName": name, "QueueUrl": url})
    for logical_id in t.resources_of_type("AWS::SecretsManager::Secret"):
        t.physical[logical_id] = PhysicalResource(t.default_name(logical_id))
    for logical_id in t.resources_of_type("AWS::SSM::Parameter"):
        t.physical[logical_id] = PhysicalResource(str(t.resolve(t.properties(logical_id).get("Name"))))
    for logical_id in t.resources_of_type("AWS::DynamoDB::Table"):
        t.physical[logical_id] = PhysicalResource(t.default_name(logical_id))
    for logical_id in t.resources_of_type("AWS::S3::Bucket"):
        name = t.default_name(logical_id).lower()
        t.physical[logical_id] = PhysicalResource(name, {"Arn": f"arn:aws:s3:::{name}"})
    result: dict[str, Any] = {}
    for spec in t.functions():
        result[spec.logical_id] = {
            **t.function_environment(spec),
            "AWS_ENDPOINT_URL": AWS_ENDPOINT,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PINECONE_CONTROL_HOST": PINECONE_URL,
            "PINECONE_OAUTH_URL": oauth_url(PINECONE_URL),
        }
    return result
