"""API keys: generation, hashing, and the FastAPI dependency that authenticates a request."""

from service.auth.dependencies import Authenticated, AuthSubject
from service.auth.keys import generate_key, hash_key

__all__ = ["AuthSubject", "Authenticated", "generate_key", "hash_key"]
