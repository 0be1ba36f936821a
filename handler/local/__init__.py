"""Local tooling: the command line, the local run of the whole function (`python -m handler serve`)
and what it fakes of Lambda (the context object, API Gateway and S3 events).

Importing this package imports nothing else: the container's model step runs the command line
with handler/core alone.
"""
