"""The AWS-free core, in rooms that say when their code runs.

- `errors`, `env`, `cpu`: what every room shares (the error hierarchy, the environment's parser,
  the CPU share), importing nothing else of the core.
- `image/`: the image work every request does (decode, options, refine, compose, encode).
- `model/`: the model at run time (its settings, the session, its contract, its file on disk).
- `bake/`: what only the image build runs (download, the DeformConv rewrite and its check,
  pre-optimisation); it may use the model room, and no request-time code imports it.
- `render`: the one call the entry points and the command line make (image work around one model
  run).

Nothing here imports boto3, Powertools, handler.aws or handler.local; the image room imports no
model code, the model room no image code, and nothing imports the bake but the local tools
(tests/unit/test_layout.py enforces all of it). The container build's model step copies only the
shared modules, the model room and the bake, so a change to the request path does not rebuild it.
"""
