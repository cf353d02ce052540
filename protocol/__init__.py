"""The vocabulary shared by the server and every client: no torch, pure Python + numpy.

``protocol.messages`` holds the typed content of each message type and the version;
``protocol.codec`` turns messages into ZeroMQ frames and back (PROTOCOL.md);
``protocol.errors`` the error hierarchy whose class names are the wire error codes.
"""
