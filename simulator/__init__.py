"""In-silico neurons: ConvNet units with optional Poisson spiking, standing in for a rig.

``simulator.target`` parses unit specs and scores many units in one forward pass;
``simulator.networks`` loads networks offline; ``simulator.noise`` turns activations into
spike counts; ``simulator.client`` plays a whole rig over the wire.
"""
