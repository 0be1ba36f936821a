"""Background removal with BiRefNet: Lambda entry points, the command line and a Python API.

Nothing may leave the process but the calls to the endpoints it is configured for. onnxruntime
sends usage telemetry by default (during inference it resolves Microsoft's events host, and at
import it creates a folder under the home directory); its `disable_telemetry_events()` does not
stop that, the environment variable does. Both libraries read their switch once, when they are
imported, so it is set here: this package is imported before any of its modules. An explicit
setting of the variable is respected.
"""

import os

for _switch in ("ORT_DISABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_switch, "1")
