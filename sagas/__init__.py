"""Sagas: multi-step writes as data, run by a durable engine inside orchestrator shards."""
