"""A quiet Ctrl-C while the ``pathgeom`` command starts (the imports take about a second).

Imported first by ``pathgeom/__init__.py``.  Only when the process *is* the command line
(``python -m pathgeom`` -- ``sys.argv[0]`` is ``"-m"`` while the package is imported -- or
the ``pathgeom`` console script) does it install a ``sys.excepthook`` for an uncaught
KeyboardInterrupt: one line, "pathgeom: interrupted", and the exit status of SIGINT (130 in
a shell) instead of a traceback of whatever import was running.  Imported as a library,
it does nothing.
"""

import os
import sys


def _quiet_interrupt(exc_type, exc, tb):
    if issubclass(exc_type, KeyboardInterrupt):
        import signal
        try:
            sys.stderr.write("pathgeom: interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)   # end as SIGINT ends a process
        os.kill(os.getpid(), signal.SIGINT)
    _previous(exc_type, exc, tb)


_previous = sys.excepthook
if sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0] if sys.argv else "") == "pathgeom":
    sys.excepthook = _quiet_interrupt
