"""Logger, metrics and tracer: one instance of each for the whole function.

Service name and namespace can be overridden with Powertools' own POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE. Nothing here may log a request body or a whole event: they carry images.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "background-remover"
NAMESPACE = "BackgroundRemover"

logger = Logger(service=SERVICE)
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
