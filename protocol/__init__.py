"""The vocabulary shared by the server and every client.

For now this holds the error hierarchy (``protocol.errors``); the ZeroMQ wire format
(message models and codec) joins it with the closed-loop server.
"""
