"""Model hooks for tests/test_distributed.py; a module of their own so that Ray workers can import them
(a hook travels with the pickled model, by reference to this module)."""
from __future__ import annotations

import os

_calls = {"n": 0}


def crash_once(flag_path: str, on_call: int, module, args):
    """Forward pre-hook: on this process's on_call-th call, kill the process, unless flag_path exists (so only
    the first attempt dies; the restarted worker goes on)."""
    _calls["n"] += 1
    if _calls["n"] == on_call and not os.path.exists(flag_path):
        with open(flag_path, "w") as f:
            f.write(str(os.getpid()))
        os._exit(17)


def interrupt_at(on_call: int, module, args):
    """Forward pre-hook: Ctrl-C on the on_call-th call in this process."""
    _calls["n"] += 1
    if _calls["n"] == on_call:
        raise KeyboardInterrupt


def reset():
    _calls["n"] = 0
