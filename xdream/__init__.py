"""The ``xdream`` command: one entry point, one subcommand per job (``xdream.main``).

It sits above every other package: server-side subcommands import ``server`` and
``simulator``, rig-side ones only ``protocol`` and ``rig_clients``, each only when chosen, so
a rig PC without torch runs ``xdream present`` and ``xdream record``.
"""
