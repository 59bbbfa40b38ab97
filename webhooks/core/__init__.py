"""The pure domain: models, retry and status policy, the circuit state machine, signing,
ids, event schemas, search attribute keys and contract names.

Deterministic and free of I/O, so workflow code may import all of it and it needs no
Temporal to test. It imports nothing else of the project.
"""
