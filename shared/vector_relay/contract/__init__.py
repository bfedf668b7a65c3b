"""The message contract: the messages, parsing them, filters, tenant schemas, the JSON Schema."""
