"""The Lambda side: function settings, S3, request parsing, the jobs' envelopes and per-object work,
logs and metrics (Powertools). The entry points themselves are handler.api and handler.jobs."""
