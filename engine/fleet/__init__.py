"""Rolling a connector version out to an install base: waves, pauses, bakes, and the record
that lets commands, pages and Temporal workflows operate one rollout together."""
