"""The HTTP gateway: Ray Serve deployments (FastAPI ingress) and their middleware."""
