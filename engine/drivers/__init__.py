"""The engine a command uses: it validates, plans and hands each run to an executor (here,
or Temporal); with Ctrl-C handling for the processes that run them."""
