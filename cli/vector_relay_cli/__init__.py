"""``vector-relay``: the operator's command for a deployed relay (or the local stack)."""
