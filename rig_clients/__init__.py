"""What runs on rig PCs: the connection to the server, a presenter and a recorder.

Pure Python with numpy, pyzmq, msgpack and pydantic: installs and runs without torch.
"""
