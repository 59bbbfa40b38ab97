"""What serves HTTP to people and other systems: the operator console, the management API
under `/api/v1` and the codec endpoint for the Temporal UI (`webhooks console`). May import
anything below it; the worker and publisher never import it.
"""
