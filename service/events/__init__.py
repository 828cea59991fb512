"""A job's event stream: recorded with the state change it describes, read over SSE."""
