"""The one size estimator: memory a command needs against what this process may use.

Every command that allocates in proportion to a user's sizes (``--T``, ``--batch``,
``--hidden``, a graph's edges, an ONNX model's declared dimensions, a figure's pixels)
calls :func:`check_fits` with its estimate *before* allocating.  What the process may use
is the least of

* the memory the system has available (``MemAvailable`` in ``/proc/meminfo``, else free
  pages),
* the address-space limit ``ulimit -v`` (``RLIMIT_AS``) less what the process has mapped
  already,
* the cgroup limit (``memory.max`` of cgroup v2, ``memory.limit_in_bytes`` of v1) less
  the cgroup's current usage,

so a refused command says how much it needs, how much there is, which limit that is,
and which flag to change.  Nothing here allocates or imports anything heavy.
"""

import os

__all__ = ["MemoryLimitError", "available_memory", "check_fits", "format_bytes"]

#: Estimates below this many bytes pass without reading the limits (the checks sit in
#: per-step paths; a few /proc reads would cost more than such a step).
SMALL = 64 << 20


class MemoryLimitError(ValueError):
    """A command whose estimated memory exceeds what the process may use (refused before
    anything is allocated; the message names the size and the setting to change)."""


def format_bytes(n):
    """``n`` bytes as a short human-readable string (``format_bytes(3 << 30) == '3.0 GiB'``).

    >>> format_bytes(3 << 30), format_bytes(1536), format_bytes(10)
    ('3.0 GiB', '1.5 KiB', '10 B')
    """
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"   # pragma: no cover


def _read_int(path):
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo(key):
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mapped_bytes():
    """The process's virtual size (``VmSize``), what ``RLIMIT_AS`` counts."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cgroup_room():
    """Bytes left under the cgroup's memory limit, or None when there is none."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as fh:
            lines = fh.read(4096).splitlines()
    except OSError:
        lines = []
    best = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, rel = parts
        rel = rel.lstrip("/")
        if hier == "0":   # cgroup v2
            base = os.path.join("/sys/fs/cgroup", rel)
            limit, used = (_read_int(os.path.join(base, "memory.max")),
                           _read_int(os.path.join(base, "memory.current")))
        elif "memory" in controllers.split(","):
            base = os.path.join("/sys/fs/cgroup/memory", rel)
            if not os.path.isdir(base):
                base = "/sys/fs/cgroup/memory"
            limit, used = (_read_int(os.path.join(base, "memory.limit_in_bytes")),
                           _read_int(os.path.join(base, "memory.usage_in_bytes")))
            if limit is not None and limit >= 1 << 60:   # v1's "no limit"
                limit = None
        else:
            continue
        if limit is not None:
            room = max(limit - (used or 0), 0)
            best = room if best is None else min(best, room)
    return best


def available_memory():
    """``(bytes, which)``: the memory this process may still allocate and the limit that
    decides it (``"available memory"``, ``"ulimit -v"`` or ``"the cgroup's memory.max"``);
    ``(None, None)`` when nothing can be read."""
    found = []
    avail = _meminfo("MemAvailable")
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    if avail is not None:
        found.append((avail, "available memory"))
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found.append((max(soft - _mapped_bytes(), 0), "ulimit -v (RLIMIT_AS)"))
    except (ImportError, ValueError, OSError):
        pass
    room = _cgroup_room()
    if room is not None:
        found.append((room, "the cgroup's memory limit"))
    if not found:
        return None, None
    return min(found)


def check_fits(need, what, hint, fraction=0.9):
    """Refuse (:class:`MemoryLimitError`) when ``need`` bytes exceed ``fraction`` of what
    the process may use.  ``what`` says what would be allocated, ``hint`` which flag or
    argument to change.  Returns ``need`` (an int).

    >>> check_fits(1024, "a small array", "--batch")
    1024
    >>> check_fits(1 << 70, "the test set", "choose a smaller --T")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pathgeom._memory.MemoryLimitError: the test set needs about 1024.0 EiB... choose a smaller --T
    """
    need = int(need)
    if need < SMALL:
        return need
    avail, which = available_memory()
    if avail is None:
        return need
    if need > fraction * avail:
        raise MemoryLimitError(f"{what} needs about {_fmt(need)}, more than the "
                               f"{format_bytes(avail)} this process may use ({which}); "
                               f"{hint}")
    return need


def _fmt(n):
    return f"{n / 2**60:.1f} EiB" if n >= 1 << 60 else format_bytes(n)
