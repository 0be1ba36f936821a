"""Run the Lambda entry points the way Lambda runs them, offline: `python -m emulator`.

- `runtime_api`: Lambda's Runtime API on 127.0.0.1, with Lambda's payload limits.
- `sandbox`: the execution environment (bubblewrap): read-only but for /tmp, non-root, no HOME.
- `syscalls`: what the function tried to write or connect to, read from an strace log.
- `function`: one function's life: cold start, invocations, its timeout, crashes.
- `configuration`: the function's environment, from template.yaml and the image.
- `local_s3`: the demo's S3 (moto) with the buckets and objects the events name.

Not part of the container image: it is the test bench around it.
"""
