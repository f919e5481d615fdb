"""One integration's run: the plan (what to do, from the document), its progress (the
document's fields and the writes that move them), and the run that calls each function and
writes after every action. It imports only the leaves (errors, models, client) and the
connector author's API; the drivers above it decide which runs to make."""
