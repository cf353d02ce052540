"""What runs on rig PCs; so far the connection to the server (``rig_clients.connection``).

Pure Python with numpy, pyzmq, msgpack and pydantic: installs and runs without torch.
"""
