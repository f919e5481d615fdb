"""A connector's functions, from their names to a run's calls.

- :mod:`~engine.run.functions.resolve`: every function the connector and the document name
  is found, here or on an extension server, before anything runs.
- :mod:`~engine.run.functions.invoke`: one call of one function: its timeout, its retries,
  the shape of what it returns.
- :mod:`~engine.run.functions.caller`: a run's calls: once per success (the journal),
  stoppable by Ctrl-C, and a failure recorded in the journal and the document.
"""
