# The Lambda container image: one image, two entry points (handler.api / handler.jobs).
# Layers go from most to least stable, so a code change rebuilds only the last layer and never
# re-downloads the 224 MB model: 1. pinned runtime requirements, 2. the baked model, 3. the code.
#
# x86_64 by default. arm64 builds with `--platform linux/arm64` (SAM: Architecture=arm64) but is
# unverified: onnxruntime has had import crashes on Lambda arm64.
FROM public.ecr.aws/lambda/python:3.12

# 1. Runtime requirements, pinned with hashes (regenerate with `make lock`).
ARG TARGETARCH=amd64
COPY layers/requirements-${TARGETARCH}.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/requirements.txt \
        --target "${LAMBDA_TASK_ROOT}" \
    && rm /tmp/requirements.txt

# 2. The model, baked at build time by the same code `python -m handler download --output` runs
#    (handler/core/bake/). Only what the bake imports is copied here: the core's shared modules, its
#    model room and the bake itself, as whole folders where a room is whole (a module added to one
#    cannot be left behind). Edits to the request path (handler/core/image/, render.py), the AWS
#    side and the local tools do not invalidate this layer; tests/deploy/test_image_build.py runs
#    this step with exactly these files. The file's checksum is verified (MODEL_SHA256 when given,
#    else the hub's own content hash), its decomposed deformable convolutions are made native
#    DeformConv when the result is verified to agree, and a pre-optimised copy is kept when it
#    loads faster.
ARG MODEL_REPO=onnx-community/BiRefNet_lite-ONNX
ARG MODEL_FILE=onnx/model.onnx
ARG MODEL_REVISION=main
ARG MODEL_SHA256=
#    A swapped model's contract, when its graph cannot say it (handler/core/model/contract.py):
#    empty means "from the model". Recorded in /opt/model/model.json, so the function needs none.
ARG MODEL_OUTPUT=
ARG MODEL_MEAN=
ARG MODEL_STD=
ARG MODEL_INPUT_SIZE=
COPY handler/__init__.py /tmp/bake/handler/
COPY handler/core/__init__.py handler/core/errors.py handler/core/env.py handler/core/cpu.py /tmp/bake/handler/core/
COPY handler/core/model/ /tmp/bake/handler/core/model/
COPY handler/core/bake/ /tmp/bake/handler/core/bake/
# The native-DeformConv rewrite (handler/core/bake/deform.py) is verified on the sample photos (the
# context holds only their .jpg files), and needs onnx (pinned, hashed), installed into a folder
# this step deletes: never in the image.
COPY samples/ /tmp/bake/samples/
COPY layers/bake-requirements-${TARGETARCH}.txt /tmp/bake-requirements.txt
#    onnxruntime sends telemetry by default and, with it, writes a device id under $HOME/.cache
#    and a session file /tmp/.ses: ORT_DISABLE_TELEMETRY=1 stops all three, so the layer holds
#    only /opt/model.
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps -r /tmp/bake-requirements.txt \
        --target /tmp/bake-deps \
    && cd /tmp/bake \
    && ORT_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_TELEMETRY=1 MODEL_REPO="${MODEL_REPO}" MODEL_FILE="${MODEL_FILE}" \
       MODEL_REVISION="${MODEL_REVISION}" MODEL_SHA256="${MODEL_SHA256}" MODEL_CACHE_DIR=/tmp/hub-cache \
       MODEL_OUTPUT="${MODEL_OUTPUT}" MODEL_MEAN="${MODEL_MEAN}" MODEL_STD="${MODEL_STD}" \
       MODEL_INPUT_SIZE="${MODEL_INPUT_SIZE}" \
       PYTHONPATH="${LAMBDA_TASK_ROOT}:/tmp/bake-deps" python -m handler.core.bake /opt/model \
    && rm -rf /tmp/bake /tmp/hub-cache /tmp/bake-deps /tmp/bake-requirements.txt

# At run time nothing is downloaded: the baked file is the model, the hub is switched off, and
# only /tmp (Lambda's one writable place) is used. Nothing is uploaded either: both libraries'
# telemetry is off.
ENV MODEL_PATH=/opt/model/model.onnx \
    MODEL_OFFLINE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    ORT_DISABLE_TELEMETRY=1 \
    HF_HOME=/tmp/huggingface

# 3. The code, last, with its bytecode: the root is read-only on Lambda, so without it every cold
#    start compiles the package again (and tries, in vain, to cache the result in /var/task).
COPY handler/ ${LAMBDA_TASK_ROOT}/handler/
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}/handler"

CMD ["handler.api.lambda_handler"]
