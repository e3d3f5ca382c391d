"""Stateful Ray actors and the pure domain rules they enforce, one package per service."""
