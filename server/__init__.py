"""The acquisition server: image generators, optimizers, the session engine and the CLI.

Nothing heavy is imported here; torch loads only when a generator or target is built.
"""
