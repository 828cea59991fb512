"""Recommendations for a new task from the service's own history of finished jobs."""
