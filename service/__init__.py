"""optserve's service: the FastAPI app, the database layer, auth, dispatch and the CLI."""

__version__ = "0.1.0"
