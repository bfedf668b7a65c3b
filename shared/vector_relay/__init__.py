"""vector_relay: keeps Pinecone indexes in step with SQS change streams.

This package is shipped as the shared-code Lambda layer (``/opt/python/vector_relay``). The Lambda
handlers in ``functions/`` stay thin and call into it.
"""

__version__ = "0.1.0"
