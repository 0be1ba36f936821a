"""What the tests that run the functions as Lambda does (bubblewrap, under strace) need from the machine."""

from __future__ import annotations

import os
import shutil

import pytest

# bubblewrap and strace come from `make sandbox-tools`; bubblewrap's namespaces need root here.
NEEDS_SANDBOX = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("strace") is None or os.geteuid() != 0,
    reason="needs bubblewrap and strace (make sandbox-tools installs them) and root",
)
