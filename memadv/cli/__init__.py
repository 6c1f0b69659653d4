"""The ``memadv`` command. Each sub-command lives in its own module here and only parses
arguments; the work is done by the stage's folder (``memadv.estimate``, ``memadv.bat``, ...)."""
