"""Operations shared by the CLI and the console: listing, counting and signalling dead
letters, steering circuits. Plain async functions over a Temporal client.

May import `webhooks.core`, the settings and the publisher; never the CLI or servers.
"""
