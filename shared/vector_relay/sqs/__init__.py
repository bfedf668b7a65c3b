"""The Lambda SQS edge: sorting a batch, dead-lettering poison, redelivery, the batch processor."""
