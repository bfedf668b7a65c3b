"""Operator tasks: redrive, tenant onboarding, reconcile, the index's lifecycle and resource."""
