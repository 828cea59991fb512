"""A shippable history of tuning jobs: the seed suite, and its export and import."""
