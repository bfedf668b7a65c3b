"""vector_relay: keeps Pinecone indexes in step with SQS change streams.

This package is shipped as the shared-code Lambda layer (``/opt/python/vector_relay``). The Lambda
handlers in ``functions/`` stay thin and call into it. Importing it keeps the libraries' wire
loggers above DEBUG, so no log level puts a secret in a log (:mod:`vector_relay.log_safety`).
"""

from vector_relay.log_safety import clamp_wire_loggers

__version__ = "0.1.0"

clamp_wire_loggers()
