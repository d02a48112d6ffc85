"""`ingest`: a user's own users and events files into the tables the synthetic world writes.

``contract`` declares what the files must hold, ``parse`` turns a file's rows into typed
columns and the checks of that contract (pure DataFrame functions), ``job`` reads the files,
runs the checks and publishes ``catalog``, ``users`` and ``events``.
"""
