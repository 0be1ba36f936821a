"""The image build's model step: `python -m handler.core.bake FOLDER`.

Bakes the model the MODEL_* environment names into FOLDER, as `python -m handler download --output
FOLDER` does from the command line. Its own entry point so that the build copies only what the
bake imports (the shared modules, the model room and this one): a change to the request path, the
AWS side or the local tools does not rebuild the model's layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handler.core.bake.run import bake
from handler.core.errors import BackgroundRemovalError
from handler.core.model.settings import ModelSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handler.core.bake", description="Bake the model the MODEL_* environment names."
    )
    parser.add_argument("folder", type=Path, help="where model.onnx and model.json are written, e.g. /opt/model")
    args = parser.parse_args(argv)
    try:
        print(bake(ModelSettings.from_env(), args.folder).summary())
    except BackgroundRemovalError as error:
        print(f"error: {' '.join(error.message.split())}", file=sys.stderr)
        return 1
    return 0


raise SystemExit(main())
