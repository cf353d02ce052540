"""``xdream present --window``: the stimulus display on the rig PC (pyglet, extra ``window``).

:mod:`.geometry` sizes and places images in degrees of visual angle from a monitor profile,
:mod:`.timing` counts on and off times in frames and finds dropped ones, :mod:`.screen`
draws a frame (image, photodiode patch, fixation point) and :mod:`.display` runs the trials
of each block and reports them to the server.
"""
