"""``migrator``, the command line: one module per job, each with its parsing, plan and execution.

``main`` builds the parser from every job module's ``register`` and turns the errors a user can
cause or cure (a bad argument, a server down) into one line and exit code 2.
"""
