"""Logger, metrics and tracer: one instance of each for the whole function.

Service name and namespace can be overridden with Powertools' own POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE. Nothing here may log a request body or a whole event: they carry images.
"""

from __future__ import annotations

import logging
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "background-remover"
NAMESPACE = "BackgroundRemover"

logger = Logger(service=SERVICE)

# Entry points pass this to `inject_lambda_context` rather than leaving it to Powertools' default,
# which reads POWERTOOLS_LOGGER_LOG_EVENT: that switch would log every whole event, images included.
LOG_EVENT = False

# At DEBUG, botocore logs every S3 call's parameters and urllib3 its traffic, and Lambda's
# ApplicationLogLevel=DEBUG turns that on through the root logger. Bodies are file objects there
# today; nothing promises they stay so, and the rest is noise: these stay at INFO regardless.
for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.INFO)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def count_error(code: str) -> None:
    """Errors by code: a metric with its own `code` dimension, so each code is its own series."""
    with single_metric(name="Errors", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="code", value=code)


def record_processed(megapixels: float, inference_ms: float, total_ms: float) -> None:
    metrics.add_metric(name="ImagesProcessed", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="InputMegapixels", unit=MetricUnit.Count, value=round(megapixels, 3))
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=round(inference_ms, 1))
    metrics.add_metric(name="TotalMs", unit=MetricUnit.Milliseconds, value=round(total_ms, 1))


# An invocation that ends in a refused request has only the Errors metric (flushed on its own);
# Powertools would warn about the empty main batch on every such request.
warnings.filterwarnings("ignore", message="No application metrics to publish")
