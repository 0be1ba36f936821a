"""The AWS-free core: settings of the model and limits, decoding, the model, refinement, rendering.

Nothing here imports boto3, Powertools, handler.aws or handler.local (tests/unit/test_layout.py
enforces it): the command line, the Python API and the container build's model step use it alone.
"""
