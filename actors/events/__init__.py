"""The event side: the outbox relay and the consumer groups (projector, cache, notifier)."""
