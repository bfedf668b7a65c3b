"""No log level, however it is set, puts a secret in a log.

The libraries under the functions write whole requests and responses at DEBUG: botocore the body
of ``GetSecretValue``'s answer (the Pinecone API key) and of ``PutSecretValue``'s request (a key
the rotation just minted), boto3 the parameters of resource calls, httpcore the headers it sends
and receives, the Pinecone SDK a curl line with the request body (the OAuth client secret) when
``PINECONE_DEBUG_CURL`` is set. They log through loggers whose level is unset, so they take the
root logger's, and Lambda's advanced logging controls (``ApplicationLogLevel``, the runtime's
``AWS_LAMBDA_LOG_LEVEL``) set the root logger: at DEBUG, the key would be in the function's log.

:func:`clamp_wire_loggers` gives those loggers a level of their own, INFO, when the package is
imported (``vector_relay/__init__.py``), before any client exists. Their INFO lines (where
credentials were found, one line per HTTP request) carry no payload. A level rather than a filter
on the handlers: a record below the level is never made, whichever handlers exist (the Lambda
runtime's, Powertools', a test's, one a developer adds later), and costs nothing; a filter guards
only the handlers it was put on and would have to read every record to recognise secrets. What
a level cannot stop is code that lowers one of these loggers again on purpose; nothing in the
relay does (``tests/unit/test_log_safety.py``).
"""

from __future__ import annotations

import logging

# The loggers (and their children) of every library on a path that carries a secret.
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore", "h2", "hpack", "grpc", "pinecone")
WIRE_LOG_FLOOR = logging.INFO


def clamp_wire_loggers() -> None:
    """Raise every wire logger, and any child given a lower level of its own, to :data:`WIRE_LOG_FLOOR`."""
    prefixes = tuple(f"{name}." for name in WIRE_LOGGERS)
    names = [*WIRE_LOGGERS, *(name for name in logging.root.manager.loggerDict if name.startswith(prefixes))]
    for name in names:
        logger = logging.getLogger(name)
        if name in WIRE_LOGGERS or logger.level != logging.NOTSET:  # an unset child takes its parent's level
            logger.setLevel(max(logger.level, WIRE_LOG_FLOOR))
