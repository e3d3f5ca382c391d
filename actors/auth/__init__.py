"""Auth: users, credentials, sessions, refresh-token families and signing keys."""
