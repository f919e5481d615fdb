"""Every default the engine and its commands share, each defined once (a leaf: no imports)."""

#: Seconds a connector function may run when its step's policy sets no timeout (SPEC §6).
FUNCTION_TIMEOUT = 300.0
#: Seconds a run's lease lasts without renewal (SPEC §7); renewed at a third of it.
LEASE_TTL = 30.0
#: Seconds the API client keeps retrying a failing request before giving up (SPEC §5).
RETRY_BUDGET = 60.0
#: The platform's rate limit per token: a bucket of API_BURST requests refilling at
#: API_RATE per second (SPEC §5).
API_RATE = 300.0
API_BURST = 1000.0
