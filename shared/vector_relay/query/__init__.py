"""The query service: answer queries on reply queues."""
