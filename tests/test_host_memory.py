"""tdviz.host_memory: freed host memory stays with the process (so the next layer's output is not
faulted in afresh), only when asked, and every `tdviz` command asks."""
import os
import subprocess
import sys

import pytest

PROBE = """
import os, sys
import numpy as np
from tdviz.host_memory import keep_freed_memory
kept = keep_freed_memory()
assert keep_freed_memory() == kept  # idempotent
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
before = rss()
block = np.ones(2**25)  # 256 MiB, touched
del block
print(kept, round(rss() - before))
"""


def _probe(**env) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_is_kept_only_when_asked():
    kept, grown = _probe()
    assert kept and grown > 200  # the 256 MiB block stayed mapped, ready for the next allocation
    kept, grown = _probe(TDVIZ_KEEP_FREED_MEMORY="0")
    assert not kept and grown < 50  # glibc's default: a big block goes back to the kernel on free


def test_every_command_asks_for_it():
    code = "import sys; from cli.main import app; sys.argv = ['tdviz', '--version']\n" \
           "import tdviz.host_memory as h\ntry:\n    app()\nexcept SystemExit:\n    pass\nprint(h._applied)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")  # --version exits before any command: nothing changed
    code = code.replace("'--version'", "'models'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == ("[True]" if sys.platform.startswith("linux") else "[False]")
