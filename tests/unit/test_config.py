"""Settings parsing: `ModelSettings.from_env` and `ImageLimits.from_env` with explicit mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.aws.settings import FunctionSettings, StorageSettings
from handler.core.cpu import available_cpus
from handler.core.errors import ConfigurationError
from handler.core.image.limits import (
    DEFAULT_MAX_INPUT_BYTES,
    DEFAULT_MAX_INPUT_FRAMES,
    DEFAULT_MAX_INPUT_PIXELS,
    ImageLimits,
)
from handler.core.model.settings import (
    DEFAULT_MODEL_FILE,
    DEFAULT_MODEL_REPO,
    DEFAULT_MODEL_REVISION,
    ModelSettings,
    ModelSpec,
)

GOOD_SHA256 = "ab" * 32


def test_defaults_name_birefnet_lite_with_imagenet_logits() -> None:
    # GIVEN an empty environment WHEN parsed
    settings = ModelSettings.from_env({})

    # THEN the default BiRefNet-lite export is named, online, and nothing is said of its contract:
    # the model describes itself (tests/model/test_self_description.py)
    assert settings.path is None
    assert (settings.repo, settings.file, settings.revision) == (
        DEFAULT_MODEL_REPO,
        DEFAULT_MODEL_FILE,
        DEFAULT_MODEL_REVISION,
    )
    assert DEFAULT_MODEL_REPO == "onnx-community/BiRefNet_lite-ONNX"
    assert DEFAULT_MODEL_FILE == "onnx/model.onnx"
    assert settings.cache_dir is None and settings.sha256 is None and settings.hub_endpoint is None
    assert settings.offline is False
    assert settings.threads == available_cpus({}) >= 1
    assert settings.spec == ModelSpec(output=None, mean=None, std=None, input_size=None)
    assert settings.name == "onnx-community/BiRefNet_lite-ONNX/onnx/model.onnx@main"


def test_model_path_and_hub_coordinates_are_read() -> None:
    settings = ModelSettings.from_env(
        {
            "MODEL_PATH": "/opt/model/birefnet.onnx",
            "MODEL_REPO": "onnx-community/BiRefNet-ONNX",
            "MODEL_FILE": "onnx/model_fp16.onnx",
            "MODEL_REVISION": "0123abc",
            "MODEL_CACHE_DIR": "/tmp/hub",
            "HF_ENDPOINT": "http://127.0.0.1:8080",
        }
    )

    assert settings.path == Path("/opt/model/birefnet.onnx")
    assert settings.name == "birefnet.onnx"  # a local file is named by its file name
    assert (settings.repo, settings.file, settings.revision) == (
        "onnx-community/BiRefNet-ONNX",
        "onnx/model_fp16.onnx",
        "0123abc",
    )
    assert settings.cache_dir == Path("/tmp/hub")
    assert settings.hub_endpoint == "http://127.0.0.1:8080"


@pytest.mark.parametrize("output", ["logits", "probabilities"])
def test_model_output_kinds(output: str) -> None:
    assert ModelSettings.from_env({"MODEL_OUTPUT": output}).spec.output == output


@pytest.mark.parametrize("output", ["sigmoid", "Logits", "prob"])
def test_invalid_model_output_is_a_configuration_error(output: str) -> None:
    with pytest.raises(ConfigurationError, match="MODEL_OUTPUT"):
        ModelSettings.from_env({"MODEL_OUTPUT": output})


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("MODEL_MEAN", "0.5,0.5,0.5", (0.5, 0.5, 0.5)),
        ("MODEL_MEAN", "0.1 0.2 0.3", (0.1, 0.2, 0.3)),
        ("MODEL_MEAN", " 0.1, 0.2,  0.3 ", (0.1, 0.2, 0.3)),
        ("MODEL_STD", "1,1,1", (1.0, 1.0, 1.0)),
        ("MODEL_STD", "0.25 0.5 2", (0.25, 0.5, 2.0)),
    ],
)
def test_mean_and_std_parse_three_numbers(name: str, raw: str, expected: tuple[float, float, float]) -> None:
    spec = ModelSettings.from_env({name: raw}).spec

    assert getattr(spec, name.removeprefix("MODEL_").lower()) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MODEL_MEAN", "0.5,0.5"),
        ("MODEL_MEAN", "0.5,0.5,0.5,0.5"),
        ("MODEL_MEAN", "a,b,c"),
        ("MODEL_STD", "0.2;0.2;0.2"),
        ("MODEL_STD", "0,1,1"),
        ("MODEL_STD", "1,-1,1"),
    ],
)
def test_malformed_mean_or_std_is_a_configuration_error(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        ModelSettings.from_env({name: raw})


@pytest.mark.parametrize(
    ("environ", "offline"),
    [
        ({}, False),
        ({"HF_HUB_OFFLINE": "1"}, True),
        ({"HF_HUB_OFFLINE": "true"}, True),
        ({"HF_HUB_OFFLINE": "0"}, False),
        ({"MODEL_OFFLINE": "yes"}, True),
        ({"MODEL_OFFLINE": "off"}, False),
        ({"MODEL_OFFLINE": "0", "HF_HUB_OFFLINE": "ON"}, True),
    ],
)
def test_offline_honours_the_hubs_own_switch(environ: dict[str, str], offline: bool) -> None:
    assert ModelSettings.from_env(environ).offline is offline


@pytest.mark.parametrize("name", ["MODEL_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("raw", ["treu", "2", "offline"])
def test_a_misspelt_offline_switch_is_a_configuration_error_not_online(name: str, raw: str) -> None:
    # A typo must not quietly mean "download at request time"
    with pytest.raises(ConfigurationError, match=name):
        ModelSettings.from_env({name: raw})


@pytest.mark.parametrize(("raw", "threads"), [("1", 1), ("3", 3), (" 6 ", 6)])
def test_model_threads_overrides_the_cpu_count(raw: str, threads: int) -> None:
    # AWS_LAMBDA_FUNCTION_MEMORY_SIZE would otherwise cap it at 1: the explicit setting wins.
    environ = {"MODEL_THREADS": raw, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}

    assert ModelSettings.from_env(environ).threads == threads


def test_threads_default_to_the_lambda_vcpu_share() -> None:
    # 1,769 MB buys one vCPU, whatever the host shows
    assert ModelSettings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}).threads == 1


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MODEL_THREADS", "0"),
        ("MODEL_THREADS", "-2"),
        ("MODEL_THREADS", "two"),
        ("MODEL_INPUT_SIZE", "0"),
        ("MODEL_INPUT_SIZE", "1024px"),
    ],
)
def test_non_positive_or_non_numeric_counts_are_configuration_errors(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        ModelSettings.from_env({name: raw})


def test_model_input_size_is_read() -> None:
    assert ModelSettings.from_env({"MODEL_INPUT_SIZE": "512"}).spec.input_size == 512


@pytest.mark.parametrize(("raw", "expected"), [(GOOD_SHA256.upper(), GOOD_SHA256), (f" {GOOD_SHA256} ", GOOD_SHA256)])
def test_sha256_is_normalised(raw: str, expected: str) -> None:
    assert ModelSettings.from_env({"MODEL_SHA256": raw}).sha256 == expected


@pytest.mark.parametrize("raw", ["ab" * 31, "zz" * 32, "ab" * 33])
def test_malformed_sha256_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="MODEL_SHA256"):
        ModelSettings.from_env({"MODEL_SHA256": raw})


def test_settings_are_frozen() -> None:
    settings = ModelSettings.from_env({})

    with pytest.raises(AttributeError):
        settings.repo = "someone/else"  # type: ignore[misc]


def test_image_limits_defaults_and_overrides() -> None:
    assert ImageLimits.from_env({}) == ImageLimits(
        DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_INPUT_PIXELS, DEFAULT_MAX_INPUT_FRAMES
    )
    assert ImageLimits.from_env(
        {"MAX_INPUT_BYTES": "1000", "MAX_INPUT_PIXELS": "50", "MAX_INPUT_FRAMES": "2"}
    ) == ImageLimits(1000, 50, 2)
    with pytest.raises(ConfigurationError, match="MAX_INPUT_PIXELS"):
        ImageLimits.from_env({"MAX_INPUT_PIXELS": "0"})
    with pytest.raises(ConfigurationError, match="MAX_INPUT_FRAMES"):
        ImageLimits.from_env({"MAX_INPUT_FRAMES": "many"})


@pytest.mark.parametrize("seconds", ["1", "3600", "604800"])
def test_presigned_url_expiry_up_to_sigv4s_seven_days_is_accepted(seconds: str) -> None:
    from handler.aws.settings import FunctionSettings

    assert FunctionSettings.from_env({"PRESIGNED_URL_EXPIRY": seconds}).presigned_url_expiry == int(seconds)


@pytest.mark.parametrize("seconds", ["604801", "0", "-5", "an hour"])
def test_presigned_url_expiry_outside_what_sigv4_signs_is_refused(seconds: str) -> None:
    from handler.aws.settings import FunctionSettings

    with pytest.raises(ConfigurationError, match="PRESIGNED_URL_EXPIRY"):
        FunctionSettings.from_env({"PRESIGNED_URL_EXPIRY": seconds})


@pytest.mark.parametrize(("raw", "expected"), [(None, False), ("", False), ("0", False), ("1", True), ("on", True)])
def test_jobs_keep_metadata_is_off_unless_switched_on(raw: str | None, expected: bool) -> None:
    environ = {} if raw is None else {"JOBS_KEEP_METADATA": raw}

    assert FunctionSettings.from_env(environ).keep_metadata is expected


def test_jobs_keep_metadata_refuses_other_words() -> None:
    with pytest.raises(ConfigurationError, match="JOBS_KEEP_METADATA"):
        FunctionSettings.from_env({"JOBS_KEEP_METADATA": "gps"})


def test_storage_settings_defaults_and_overrides() -> None:
    assert StorageSettings.from_env({}) == StorageSettings("standard", 4, 5.0, 30.0)
    settings = StorageSettings.from_env(
        {"S3_RETRY_MODE": "Adaptive", "S3_MAX_ATTEMPTS": "6", "S3_CONNECT_TIMEOUT": "1.5", "S3_READ_TIMEOUT": "10"}
    )
    assert settings == StorageSettings("adaptive", 6, 1.5, 10.0)


@pytest.mark.parametrize(
    ("name", "raw"),
    [("S3_RETRY_MODE", "legacy"), ("S3_MAX_ATTEMPTS", "0"), ("S3_READ_TIMEOUT", "-1"), ("S3_CONNECT_TIMEOUT", "soon")],
)
def test_unworkable_storage_settings_are_configuration_errors(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        StorageSettings.from_env({name: raw})
