"""infra/monitoring and infra/steps/monitoring.sh: definitions gcloud accepts, filters that
match the log lines the code writes, and a step that applies them idempotently.

1. Every file is read the way gcloud reads it (its YAML loader into its own API message
   classes, in a subprocess: tests/infra/fake_gcloud.py ``dump_configs``): no field those
   classes do not know, no value of the wrong type or outside an enum. A structural
   validator per resource type then checks what the message classes cannot: kinds and
   extractors that agree, labels declared, one condition type per condition, durations,
   filters that name our metrics or the contract's subscriptions, a laid-out dashboard.
2. The services, the entry points and reconcile run in-process over the unit tests'
   fakes; the JSON lines they print become Cloud Logging entries (as Cloud Run turns
   stdout into jsonPayload), and each log-based metric's filter, evaluated on them, must
   select exactly the lines it is meant to count, with its label and value fields present.
3. The step's dry-run plan, then a story against the fake gcloud: first run (Monitoring
   slow to know new metrics), a second run that changes nothing, drift repaired, a
   notification channel setting applied; the real gcloud accepts every command it ran.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import operator
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import flask
import pytest
from paynow import observability, runtime
from paynow.adapters.secrets import StaticSecrets
from paynow.domain import payloads
from paynow.domain.errors import (
    AwaitingEarlierEvent,
    Contention,
    DependencyUnavailable,
    EventNotVisible,
    TransientError,
    Unauthenticated,
)
from paynow.domain.events import normalize, parse_envelope
from paynow.domain.messages import QueueMessage
from paynow.service.async_queue import AsyncQueue
from paynow.service.reconcile import ReconcileService
from paynow.service.webhook import WebhookService
from paynow.service.worker import WorkerService

from infra.ledger_verify import main as ledger_main
from tests.infra.conftest import (
    ROOT,
    FakeGcloud,
    FakeRun,
    Result,
    base_env,
    gcloud_against_failing_api,
    is_mutation,
    make_fake,
    make_trap,
    project_id,
    real_gcloud,
    run_script,
    write_env,
)
from tests.support.asgi import AsgiClient, of_function
from tests.unit.fakes import FakeAsyncPublisher, FakeAsyncRecords, FakePublisher, FakeStore
from tests.unit.helpers import CATALOG, NOW, SECRET, push, settings

MONITORING = ROOT / "infra" / "monitoring"
METRIC_FILES = sorted((MONITORING / "metrics").glob("*.yaml"))
ALERT_FILES = sorted((MONITORING / "alerts").glob("*.json"))
DASHBOARD_FILE = MONITORING / "dashboard.json"
STEP = "infra/steps/monitoring.sh"
USER_PREFIX = "logging.googleapis.com/user/"
SUBSCRIPTIONS = ("paynow-events-push", "paynow-events-dlq-sub")
PUBSUB_METRICS = {  # metric type -> value type (both GAUGE)
    "pubsub.googleapis.com/subscription/num_undelivered_messages": "INT64",
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": "INT64",
}
# Cloud Run's own count of the requests it answered, before or without the code (DELTA INT64).
RUN_REQUESTS = "run.googleapis.com/request_count"
RUN_REQUEST_LABELS = frozenset({"response_code", "response_code_class", "route"})
# The services an alert may name: placeholders infra/steps/monitoring.sh fills in.
SERVICE_PLACEHOLDERS = {
    "@WEBHOOK_SERVICE@",
    "@WORKER_SERVICE@",
    "@RECONCILE_SERVICE@",
    "@LEDGER_SERVICE@",
}
CONDITION_KINDS = (
    "conditionThreshold",
    "conditionAbsent",
    "conditionMonitoringQueryLanguage",
    "conditionMatchedLog",
    "conditionPrometheusQueryLanguage",
    "conditionSql",
)
WIDGET_KINDS = ("xyChart", "scorecard", "text", "timeSeriesTable", "pieChart", "alertChart")
DURATION = re.compile(r"^\d+(\.\d+)?s$")
EXTRACT = re.compile(r"^EXTRACT\(jsonPayload\.([A-Za-z_]\w*)\)$")
# What each aligner / reducer accepts: a counter (INT64 DELTA), a distribution, a gauge.
ALIGNERS = {
    "counter": {"ALIGN_DELTA", "ALIGN_RATE", "ALIGN_SUM", "ALIGN_COUNT", "ALIGN_MAX", "ALIGN_MEAN"},
    "distribution": {
        "ALIGN_DELTA",
        "ALIGN_SUM",
        "ALIGN_PERCENTILE_99",
        "ALIGN_PERCENTILE_95",
        "ALIGN_PERCENTILE_50",
        "ALIGN_PERCENTILE_05",
    },
    "gauge": {"ALIGN_MAX", "ALIGN_MIN", "ALIGN_MEAN", "ALIGN_SUM", "ALIGN_COUNT"},
}
REDUCERS = {
    "counter": {"REDUCE_SUM", "REDUCE_MAX", "REDUCE_MEAN", "REDUCE_COUNT"},
    "distribution": {
        "REDUCE_SUM",
        "REDUCE_PERCENTILE_99",
        "REDUCE_PERCENTILE_95",
        "REDUCE_PERCENTILE_50",
        "REDUCE_PERCENTILE_05",
    },
    "gauge": {"REDUCE_SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_MEAN"},
}


# --- the files as gcloud reads them ---------------------------------------------------


def dump_configs(files: list[tuple[str, Path]], config: Path) -> dict[str, Any]:
    """Each file through gcloud's loader and message classes, in one subprocess."""
    code = (
        "import sys; from tests.infra.fake_gcloud import dump_configs; dump_configs(sys.argv[1:])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *(f"{kind}={path}" for kind, path in files)],
        cwd=ROOT,
        env={**base_env(config), "FAKE_GCLOUD_SDK": str(Path(real_gcloud()).parent.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, gcloud_config: Path) -> dict[str, Any]:
    """Every definition, plus two deliberately broken ones (the loader must catch them)."""
    tmp = tmp_path_factory.mktemp("broken")
    typo = tmp / "typo.yaml"
    typo.write_text(
        "filtr: a\nfilter: b\nmetricDescriptor:\n  metricKind: DELTAS\n  valueType: INT64\n"
    )
    wrong_type = tmp / "wrong-type.json"
    wrong_type.write_text(
        json.dumps(
            {"displayName": "x", "conditions": [{"conditionThreshold": {"thresholdValue": "a"}}]}
        )
    )
    files = [("LogMetric", f) for f in METRIC_FILES] + [("AlertPolicy", f) for f in ALERT_FILES]
    files += [("Dashboard", DASHBOARD_FILE), ("LogMetric", typo), ("AlertPolicy", wrong_type)]
    return dump_configs(files, gcloud_config)


@pytest.fixture(scope="module")
def metrics(loaded: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f.stem: loaded[str(f)]["data"] for f in METRIC_FILES}


def test_gcloud_reads_every_definition_without_unknown_fields(loaded: dict[str, Any]) -> None:
    assert len(METRIC_FILES) >= 10 and len(ALERT_FILES) >= 6
    problems = {
        Path(path).relative_to(ROOT).as_posix(): entry["problems"]
        for path, entry in loaded.items()
        if Path(path).is_relative_to(ROOT) and entry["problems"]
    }
    assert problems == {}


def test_the_loader_catches_typos_bad_enums_and_wrong_types(loaded: dict[str, Any]) -> None:
    broken = {
        Path(p).name: e["problems"] for p, e in loaded.items() if not Path(p).is_relative_to(ROOT)
    }
    assert sorted(broken["typo.yaml"]) == [
        "LogMetric.filtr",
        "LogMetric.metricDescriptor.metricKind",
    ]
    assert "thresholdValue" in broken["wrong-type.json"][0]


# --- structural validators, one per resource type ---------------------------------------

_STRING = r'"(?:[^"\\]|\\.)*"'
_TERM = re.compile(
    rf"([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<)\s*({_STRING}|-?\d+(?:\.\d+)?|one_of\((?:{_STRING},?)+\))"
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
Term = tuple[str, str, str | float | tuple[str, ...]]


def parse_filter(text: str) -> list[Term]:
    """The subset of the Logging and Monitoring filter languages these files use:
    comparisons ``path OP "string"`` or ``path OP number`` joined by AND, and Monitoring's
    ``path = one_of("a", "b")``. Anything else is refused, so a filter this test cannot
    evaluate fails instead of passing unread."""
    terms: list[Term] = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.fullmatch(part.strip())
        if not match:
            raise ValueError(f"filter term outside the evaluated subset: {part!r}")
        path, op, raw = match.groups()
        value: str | float | tuple[str, ...]
        if raw.startswith("one_of("):
            if op != "=":
                raise ValueError(f"one_of takes =: {part!r}")
            value = tuple(json.loads(f"[{raw[len('one_of(') : -1]}]"))
        elif raw.startswith('"'):
            value = json.loads(raw)
        else:
            value = float(raw)
        terms.append((path, op, value))
    return terms


def lookup(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def matches(entry: dict[str, Any], terms: list[Term]) -> bool:
    """Cloud Logging's verdict for these terms: a missing field matches nothing; numbers
    compare as numbers, anything else as text."""
    for path, op, want in terms:
        got = lookup(entry, path)
        if got is None:
            return False
        if isinstance(want, tuple):
            if str(got) not in want:
                return False
        elif isinstance(want, float):
            if isinstance(got, bool) or not isinstance(got, int | float):
                return False
            if not _OPS[op](float(got), want):
                return False
        elif not _OPS[op](str(got), want):
            return False
    return True


def log_metric_problems(name: str, m: dict[str, Any]) -> list[str]:
    """A LogMetric as `gcloud logging metrics create NAME --config-from-file` sends it."""
    problems = []
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,99}", name):
        problems.append(f"name {name!r}: lowercase letters, digits, _")
    if not m.get("description"):
        problems.append("description is required")
    try:
        terms = parse_filter(str(m.get("filter", "")))
        if ("resource.type", "=", "cloud_run_revision") not in terms:
            problems.append('filter must select resource.type="cloud_run_revision"')
    except ValueError as exc:
        problems.append(str(exc))
    descriptor = m.get("metricDescriptor") or {}
    kind, value_type = descriptor.get("metricKind"), descriptor.get("valueType")
    if kind != "DELTA":
        problems.append(f"metricKind {kind}: log-based metrics are DELTA")
    if value_type == "DISTRIBUTION":
        if not EXTRACT.match(str(m.get("valueExtractor", ""))):
            problems.append("a DISTRIBUTION needs valueExtractor EXTRACT(jsonPayload.FIELD)")
        buckets = m.get("bucketOptions") or {}
        kinds = [
            k for k in ("linearBuckets", "exponentialBuckets", "explicitBuckets") if k in buckets
        ]
        if len(kinds) != 1:
            problems.append("a DISTRIBUTION needs bucketOptions with exactly one bucket kind")
        exponential = buckets.get("exponentialBuckets")
        if exponential and not (
            exponential.get("numFiniteBuckets", 0) > 0
            and exponential.get("growthFactor", 0) > 1
            and exponential.get("scale", 0) > 0
        ):
            problems.append("exponentialBuckets: numFiniteBuckets > 0, growthFactor > 1, scale > 0")
    elif value_type == "INT64":
        if "valueExtractor" in m or "bucketOptions" in m:
            problems.append("a counter (INT64) takes no valueExtractor nor bucketOptions")
    else:
        problems.append(f"valueType {value_type}: INT64 (counter) or DISTRIBUTION")
    declared = [label.get("key") for label in descriptor.get("labels", [])]
    extractors = m.get("labelExtractors") or {}
    if len(declared) != len(set(declared)) or len(declared) > 10:
        problems.append(f"labels {declared}: unique, at most 10")
    for label in descriptor.get("labels", []):
        if label.get("valueType", "STRING") not in ("STRING", "BOOL", "INT64"):
            problems.append(f"label {label.get('key')}: valueType STRING, BOOL or INT64")
    if set(extractors) != set(declared):
        problems.append(
            f"labelExtractors {sorted(extractors)} != declared labels {sorted(declared)}"
        )
    problems += [
        f"labelExtractors.{k}: {v!r} is not EXTRACT(jsonPayload.FIELD)"
        for k, v in extractors.items()
        if not EXTRACT.match(v)
    ]
    return problems


@dataclass(frozen=True)
class MetricType:
    labels: frozenset[str]
    shape: str  # counter | distribution | gauge
    resource: str


def metric_types(metrics: dict[str, dict[str, Any]]) -> dict[str, MetricType]:
    """The metric types alerts and charts may use: ours, and the Pub/Sub ones."""
    known = {t: MetricType(frozenset(), "gauge", "pubsub_subscription") for t in PUBSUB_METRICS}
    known[RUN_REQUESTS] = MetricType(RUN_REQUEST_LABELS, "counter", "cloud_run_revision")
    for name, m in metrics.items():
        descriptor = m.get("metricDescriptor") or {}
        shape = "distribution" if descriptor.get("valueType") == "DISTRIBUTION" else "counter"
        labels = frozenset(label["key"] for label in descriptor.get("labels", []))
        known[USER_PREFIX + name] = MetricType(labels, shape, "cloud_run_revision")
    return known


def series_problems(
    where: str,
    text: str,
    aggregations: list[dict[str, Any]],
    known: dict[str, MetricType],
) -> list[str]:
    """A Monitoring time series filter and its aggregations."""
    try:
        terms = parse_filter(text)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    fields = {path: value for path, op, value in terms if op == "="}
    if len(fields) != len(terms):
        return [f"{where}: only = comparisons"]
    metric = known.get(str(fields.get("metric.type")))
    if metric is None:
        return [
            f"{where}: metric.type {fields.get('metric.type')!r} is not one of ours nor Pub/Sub's"
        ]
    problems = []
    if fields.get("resource.type") != metric.resource:
        problems.append(f"{where}: resource.type must be {metric.resource}")
    if (
        metric.resource == "pubsub_subscription"
        and fields.get("resource.labels.subscription_id") not in SUBSCRIPTIONS
    ):
        problems.append(f"{where}: resource.labels.subscription_id must be one of {SUBSCRIPTIONS}")
    services = fields.get("resource.labels.service_name")
    if metric.resource == "cloud_run_revision" and fields.get("metric.type") == RUN_REQUESTS:
        named = set(services) if isinstance(services, tuple) else {services}
        if not named <= SERVICE_PLACEHOLDERS:
            problems.append(f"{where}: service_name must be of {sorted(SERVICE_PLACEHOLDERS)}")
    for path in fields:
        if (
            path.startswith(("metric.label.", "metric.labels."))
            and path.split(".")[-1] not in metric.labels
        ):
            problems.append(f"{where}: {path} is not a label of the metric")
    if not aggregations:
        problems.append(f"{where}: aggregations are required")
    for agg in aggregations:
        if not DURATION.match(str(agg.get("alignmentPeriod", ""))):
            problems.append(f"{where}: alignmentPeriod like '60s'")
        if agg.get("perSeriesAligner") not in ALIGNERS[metric.shape]:
            problems.append(
                f"{where}: aligner {agg.get('perSeriesAligner')} does not suit a {metric.shape}"
            )
        reducer = agg.get("crossSeriesReducer")
        if reducer is not None and reducer not in REDUCERS[metric.shape]:
            problems.append(f"{where}: reducer {reducer} does not suit a {metric.shape}")
        for group in agg.get("groupByFields", []):
            if group == "resource.labels.service_name" and metric.resource == "cloud_run_revision":
                continue
            if group.split(".")[-1] not in metric.labels or not group.startswith("metric.label"):
                problems.append(f"{where}: groupByFields {group} is not a label of the metric")
        if agg.get("groupByFields") and reducer is None:
            problems.append(f"{where}: groupByFields need a crossSeriesReducer")
    return problems


def alert_policy_problems(policy: dict[str, Any], known: dict[str, MetricType]) -> list[str]:
    """An AlertPolicy as `gcloud alpha monitoring policies create --policy-from-file` sends it."""
    problems = []
    if not policy.get("displayName"):
        problems.append("displayName is required")
    if policy.get("combiner") not in ("AND", "OR", "AND_WITH_MATCHING_RESOURCE"):
        problems.append("combiner: AND, OR or AND_WITH_MATCHING_RESOURCE")
    if policy.get("enabled") is not True:
        problems.append("enabled must be true")
    doc = policy.get("documentation") or {}
    if not doc.get("content") or doc.get("mimeType") != "text/markdown":
        problems.append("documentation: content in text/markdown (what to do)")
    if "name" in policy or "notificationChannels" in policy:
        problems.append("name and notificationChannels come from the step, not the file")
    conditions = policy.get("conditions") or []
    if not 1 <= len(conditions) <= 6:
        problems.append("1 to 6 conditions")
    for i, condition in enumerate(conditions):
        where = f"conditions[{i}]"
        if not condition.get("displayName"):
            problems.append(f"{where}: displayName is required")
        kinds = [k for k in CONDITION_KINDS if k in condition]
        if kinds not in (["conditionThreshold"], ["conditionAbsent"]):
            problems.append(
                f"{where}: exactly one of conditionThreshold / conditionAbsent, got {kinds}"
            )
            continue
        body = condition[kinds[0]]
        if not DURATION.match(str(body.get("duration", ""))):
            problems.append(f"{where}: duration like '300s'")
        if (body.get("trigger") or {}).get("count", 1) < 1:
            problems.append(f"{where}: trigger.count >= 1")
        if kinds == ["conditionThreshold"]:
            if body.get("comparison") not in (
                "COMPARISON_GT",
                "COMPARISON_GE",
                "COMPARISON_LT",
                "COMPARISON_LE",
            ):
                problems.append(f"{where}: comparison COMPARISON_GT/GE/LT/LE")
            if not isinstance(body.get("thresholdValue"), int | float):
                problems.append(f"{where}: thresholdValue is a number")
        elif {"comparison", "thresholdValue"} & set(body):
            problems.append(f"{where}: an absence condition has no threshold")
        problems += series_problems(
            where, str(body.get("filter", "")), body.get("aggregations", []), known
        )
    return problems


def dashboard_problems(board: dict[str, Any], known: dict[str, MetricType]) -> list[str]:
    """A Dashboard as `gcloud monitoring dashboards create --config-from-file` sends it."""
    problems = []
    if not board.get("displayName"):
        problems.append("displayName is required")
    layouts = [k for k in ("mosaicLayout", "gridLayout", "rowLayout", "columnLayout") if k in board]
    if layouts != ["mosaicLayout"]:
        return [*problems, f"one layout, mosaicLayout; got {layouts}"]
    if {"name", "etag", "labels"} & set(board):
        problems.append("name, etag and labels come from the API and the step, not the file")
    mosaic = board["mosaicLayout"]
    columns = mosaic.get("columns", 0)
    if not 1 <= columns <= 48:
        problems.append("mosaicLayout.columns between 1 and 48")
    taken: dict[tuple[int, int], int] = {}
    for i, tile in enumerate(mosaic.get("tiles") or []):
        where = f"tiles[{i}]"
        x, y, w, h = (tile.get(k, 0) for k in ("xPos", "yPos", "width", "height"))
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > columns:
            problems.append(f"{where}: inside the {columns} columns, width and height >= 1")
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            if cell in taken:
                problems.append(f"{where}: overlaps tiles[{taken[cell]}]")
                break
            taken[cell] = i
        widget = tile.get("widget") or {}
        kinds = [k for k in WIDGET_KINDS if k in widget]
        if len(kinds) != 1 or not widget.get("title"):
            problems.append(f"{where}: a widget with a title and exactly one content kind")
            continue
        if kinds == ["xyChart"]:
            data_sets = widget["xyChart"].get("dataSets") or []
            if not data_sets:
                problems.append(f"{where}: xyChart.dataSets is empty")
            for j, data_set in enumerate(data_sets):
                query = data_set.get("timeSeriesQuery") or {}
                series = query.get("timeSeriesFilter")
                if set(query) != {"timeSeriesFilter"} or not series:
                    problems.append(f"{where}.dataSets[{j}]: timeSeriesQuery.timeSeriesFilter")
                    continue
                problems += series_problems(
                    f"{where}.dataSets[{j}]",
                    str(series.get("filter", "")),
                    [series.get("aggregation") or {}],
                    known,
                )
                for label in re.findall(
                    r"\$\{metric\.labels\.(\w+)\}", data_set.get("legendTemplate", "")
                ):
                    groups = (series.get("aggregation") or {}).get("groupByFields", [])
                    if f"metric.label.{label}" not in groups:
                        problems.append(
                            f"{where}.dataSets[{j}]: legend label {label} is not grouped by"
                        )
    if not taken:
        problems.append("mosaicLayout.tiles is empty")
    return problems


def test_every_log_metric_is_valid(metrics: dict[str, dict[str, Any]]) -> None:
    problems = {name: p for name, m in metrics.items() if (p := log_metric_problems(name, m))}
    assert problems == {}


def test_every_alert_policy_is_valid(
    loaded: dict[str, Any], metrics: dict[str, dict[str, Any]]
) -> None:
    known = metric_types(metrics)
    problems = {
        f.name: p
        for f in ALERT_FILES
        if (p := alert_policy_problems(loaded[str(f)]["data"], known))
    }
    assert problems == {}


def test_the_dashboard_is_valid(loaded: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> None:
    assert dashboard_problems(loaded[str(DASHBOARD_FILE)]["data"], metric_types(metrics)) == []
    text = DASHBOARD_FILE.read_text()
    assert text.startswith("{") and text.count('"displayName"') == 1  # what the step relies on


def test_the_validators_catch_mistakes(metrics: dict[str, dict[str, Any]]) -> None:
    known = metric_types(metrics)
    counter = metrics["paynow_worker_failures"]
    assert log_metric_problems(
        "x", {**counter, "labelExtractors": {"other": "EXTRACT(jsonPayload.other)"}}
    )
    latency = metrics["paynow_worker_latency"]
    assert log_metric_problems("x", {k: v for k, v in latency.items() if k != "bucketOptions"})
    assert log_metric_problems("x", {**counter, "filter": 'jsonPayload.metric:"x" OR y'})
    alert = json.loads((MONITORING / "alerts" / "worker-failures.json").read_text())
    condition = alert["conditions"][0]
    both = {**condition, "conditionAbsent": condition["conditionThreshold"]}
    assert alert_policy_problems({**alert, "conditions": [both]}, known)
    unknown = json.loads(
        json.dumps(alert).replace("paynow_worker_alarming_failures", "paynow_nothing")
    )
    assert alert_policy_problems(unknown, known)
    minutes = json.loads(json.dumps(alert).replace('"60s"', '"1m"'))
    assert alert_policy_problems(minutes, known)
    board = json.loads(DASHBOARD_FILE.read_text())
    board["mosaicLayout"]["tiles"].append(board["mosaicLayout"]["tiles"][1])
    assert any("overlaps" in p for p in dashboard_problems(board, known))


# --- what the alerts and the dashboard must cover ---------------------------------------


def condition_of(name: str, loaded: dict[str, Any], index: int = 0) -> tuple[str, dict[str, Any]]:
    condition = loaded[str(MONITORING / "alerts" / f"{name}.json")]["data"]["conditions"][index]
    kind = next(k for k in CONDITION_KINDS if k in condition)
    return kind, condition[kind]


@pytest.mark.parametrize(
    ("alert", "kind", "metric", "subscription", "threshold", "duration"),
    [
        (
            "queue-backlog",
            "conditionThreshold",
            "pubsub.googleapis.com/subscription/num_undelivered_messages",
            "paynow-events-push",
            100,
            "300s",
        ),
        (
            "worker-failures",
            "conditionThreshold",
            USER_PREFIX + "paynow_worker_alarming_failures",
            None,
            0,
            "0s",
        ),
        ("cloud-run-5xx", "conditionThreshold", RUN_REQUESTS, None, 5, "0s"),
        ("cloud-run-429", "conditionThreshold", RUN_REQUESTS, None, 10, "0s"),
        (
            "reconcile-not-running",
            "conditionAbsent",
            USER_PREFIX + "paynow_reconcile_runs",
            None,
            None,
            "1200s",
        ),
        (
            "dlq-oldest-age",
            "conditionThreshold",
            "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
            "paynow-events-dlq-sub",
            604800,
            "300s",
        ),
        (
            "ledger-mismatch",
            "conditionThreshold",
            USER_PREFIX + "paynow_ledger_verify",
            None,
            0,
            "0s",
        ),
        (
            "worker-latency-p95",
            "conditionThreshold",
            USER_PREFIX + "paynow_worker_latency",
            None,
            5000,
            "300s",
        ),
        (
            "dlq-messages",
            "conditionThreshold",
            "pubsub.googleapis.com/subscription/num_undelivered_messages",
            "paynow-events-dlq-sub",
            0,
            "60s",
        ),
        (
            "no-processing",
            "conditionAbsent",
            USER_PREFIX + "paynow_worker_processed",
            None,
            None,
            "1800s",
        ),
        (
            "oldest-unacked-age",
            "conditionThreshold",
            "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
            "paynow-events-push",
            600,
            "60s",
        ),
    ],
)
def test_the_required_alerts(
    loaded: dict[str, Any],
    alert: str,
    kind: str,
    metric: str,
    subscription: str | None,
    threshold: float | None,
    duration: str,
) -> None:
    got_kind, body = condition_of(alert, loaded)
    fields = {path: value for path, _, value in parse_filter(body["filter"])}
    assert (got_kind, fields["metric.type"], body["duration"]) == (kind, metric, duration)
    assert fields.get("resource.labels.subscription_id") == subscription
    assert body.get("thresholdValue") == threshold
    if alert == "worker-failures":
        assert body["aggregations"][0]["alignmentPeriod"] == "60s"
    if alert == "worker-latency-p95":
        assert body["aggregations"][0]["crossSeriesReducer"] == "REDUCE_PERCENTILE_95"


def test_cloud_run_errors_are_counted_per_service_and_the_workers_retry_answer_is_not(
    loaded: dict[str, Any],
) -> None:
    """5xx from every service but the worker, whose 503 asks Pub/Sub to retry (its failures
    page through paynow_worker_alarming_failures); the worker's 500, 502 and 504 do page."""
    conditions = [condition_of("cloud-run-5xx", loaded, i)[1] for i in (0, 1)]
    fields = [{p: v for p, _, v in parse_filter(c["filter"])} for c in conditions]
    assert fields[0]["metric.labels.response_code_class"] == "5xx"
    services = fields[0]["resource.labels.service_name"]
    assert isinstance(services, tuple)
    assert set(services) == SERVICE_PLACEHOLDERS - {"@WORKER_SERVICE@"}
    assert fields[1]["resource.labels.service_name"] == "@WORKER_SERVICE@"
    assert fields[1]["metric.labels.response_code"] == ("500", "502", "504")
    _, throttled = condition_of("cloud-run-429", loaded)
    assert {p: v for p, _, v in parse_filter(throttled["filter"])}[
        "metric.labels.response_code"
    ] == "429"
    for body in [*conditions, throttled]:
        assert body["aggregations"][0]["groupByFields"] == ["resource.labels.service_name"]
    policy = loaded[str(MONITORING / "alerts" / "ledger-mismatch.json")]["data"]
    outcomes = [
        {p: v for p, _, v in parse_filter(c["conditionThreshold"]["filter"])}[
            "metric.label.outcome"
        ]
        for c in policy["conditions"]
    ]
    assert outcomes == ["mismatch", "error"] and policy["combiner"] == "OR"


def test_no_processing_also_counts_the_sync_path(loaded: dict[str, Any]) -> None:
    """In sync mode the worker processes nothing: the alert must not fire for that alone."""
    policy = loaded[str(MONITORING / "alerts" / "no-processing.json")]["data"]
    assert policy["combiner"] == "AND"
    _, sync = condition_of("no-processing", loaded, 1)
    assert dict((p, v) for p, _, v in parse_filter(sync["filter"])) == {
        "metric.type": USER_PREFIX + "paynow_webhook_handled",
        "resource.type": "cloud_run_revision",
        "metric.label.outcome": "processed",
    }


def test_the_dashboard_charts_queue_dlq_rates_and_latency_by_mode(loaded: dict[str, Any]) -> None:
    board = loaded[str(DASHBOARD_FILE)]["data"]
    series = [
        (
            dict(
                (p, v)
                for p, _, v in parse_filter(ds["timeSeriesQuery"]["timeSeriesFilter"]["filter"])
            ),
            ds["timeSeriesQuery"]["timeSeriesFilter"]["aggregation"],
        )
        for tile in board["mosaicLayout"]["tiles"]
        for ds in tile["widget"].get("xyChart", {}).get("dataSets", [])
    ]
    charted = {(f["metric.type"], f.get("resource.labels.subscription_id")) for f, _ in series}
    assert {
        ("pubsub.googleapis.com/subscription/num_undelivered_messages", "paynow-events-push"),
        ("pubsub.googleapis.com/subscription/num_undelivered_messages", "paynow-events-dlq-sub"),
        ("pubsub.googleapis.com/subscription/oldest_unacked_message_age", "paynow-events-push"),
    } <= charted
    user = {str(t).removeprefix(USER_PREFIX) for t, _ in charted if str(t).startswith(USER_PREFIX)}
    assert {
        "paynow_queue_published",
        "paynow_worker_processed",
        "paynow_worker_failures",
        "paynow_dead_lettered",
        "paynow_webhook_rejected",
        "paynow_worker_latency",
    } <= user
    by_mode = [a for f, a in series if f["metric.type"] == USER_PREFIX + "paynow_webhook_latency"]
    assert by_mode and all(a["groupByFields"] == ["metric.label.mode"] for a in by_mode)


def test_each_alert_names_a_runbook_section_and_the_docs_list_everything(
    loaded: dict[str, Any],
) -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    headings = set(re.findall(r"^#{2,4} (.+)$", runbook, re.MULTILINE))
    for f in ALERT_FILES:
        content = loaded[str(f)]["data"]["documentation"]["content"]
        (section,) = re.findall(r'docs/runbook\.md, section "([^"]+)"', content)
        assert section in headings, f.name
    operations = (ROOT / "docs" / "operations.md").read_text()
    for name in [f.stem for f in METRIC_FILES + ALERT_FILES]:
        assert f"`{name}`" in operations, name


# --- the metrics' filters against the log lines the code writes -------------------------


class _Refuser:
    def verify(self, header: str | None) -> None:
        raise Unauthenticated("no token")


class _Down:
    def queueable(self, *args: Any) -> None:
        return None

    def accept(self, *args: Any) -> Any:
        raise DependencyUnavailable("Firestore down")


class _Failing(FakeStore):
    """A store whose points transaction fails with one transient error."""

    def __init__(self, catalog: dict[str, int], error: TransientError) -> None:
        super().__init__(catalog)
        self._error = error

    def process(self, *args: Any, **kwargs: Any) -> Any:
        raise self._error


def _post(function: Any, body: bytes, headers: dict[str, str]) -> int:
    app = flask.Flask("monitoring-test")
    with app.test_request_context("/", method="POST", data=body, headers=headers):
        return int(function(flask.request).status_code)


def _post_webhook(main: Any, body: bytes, headers: dict[str, str]) -> int:
    client = AsgiClient(of_function(main.paynow_webhook))
    try:
        return client.request("POST", body, headers).status
    finally:
        client.close()


def _order(event_id: str, product: str = "gems-100") -> tuple[bytes, dict[str, str]]:
    doc = payloads.order_completed(
        event_id, f"o-{event_id}", f"c-{event_id}", "user-42", [(product, 1, 199)]
    )
    return payloads.signed(doc, SECRET, int(NOW * 1000))


def _run_the_code(main: Any, mp: pytest.MonkeyPatch) -> None:
    """One pass over every path that writes a metric line, through the real services."""
    store, publisher = FakeStore(CATALOG), FakePublisher()
    sync_settings = settings(WEBHOOK_MODE="sync")
    queue_settings = settings(WEBHOOK_MODE="queue", MAX_DELIVERY_ATTEMPTS="3")
    secrets = StaticSecrets(SECRET)
    sync = WebhookService(sync_settings, store, publisher, secrets, clock=lambda: NOW)
    queue = WebhookService(queue_settings, store, publisher, secrets, clock=lambda: NOW)
    worker = WorkerService(queue_settings, store, publisher, clock=lambda: NOW)

    mp.setattr(main, "SETTINGS", sync_settings)
    mp.setattr(runtime, "webhook", lambda: sync)
    assert _post_webhook(main, *_order("sync-ok")) == 200  # processed inline
    assert _post_webhook(main, *_order("sync-bad", "not-in-catalog")) == 200  # dead-lettered
    body, headers = _order("forged")
    assert _post_webhook(main, body, {**headers, "PayNow-Signature": "AAAA"}) == 401
    mp.setattr(runtime, "webhook", _Down)
    assert _post_webhook(main, *_order("down")) == 503

    mp.setattr(main, "SETTINGS", queue_settings)
    mp.setattr(runtime, "webhook", lambda: queue)
    on_loop = AsyncQueue(FakeAsyncRecords(store), FakeAsyncPublisher(publisher))
    mp.setattr(runtime, "async_queue", lambda: on_loop)
    assert _post_webhook(main, *_order("queued-ok")) == 200
    assert _post_webhook(main, *_order("queued-bad", "not-in-catalog")) == 200
    for message in list(publisher.published):
        worker.handle(push(message, age_s=2.5))  # processed; dead-lettered by the worker
    with contextlib.suppress(TransientError):  # a message whose record is not visible yet
        worker.handle(push(QueueMessage("unseen", "ON_ORDER_COMPLETED", "c-1", "user-42")))
    mp.setattr(runtime, "push_verifier", _Refuser)
    assert _post(main.paynow_worker, b"{}", {"Authorization": "Bearer x"}) == 401
    mp.setattr(runtime, "scheduler_verifier", _Refuser)
    assert _post(main.paynow_reconcile, b"{}", {"Authorization": "Bearer x"}) == 401

    for error in (
        Contention("busy"),
        AwaitingEarlierEvent("an earlier event is queued"),
        DependencyUnavailable("Firestore down"),  # the kind that pages
    ):
        blocked = _Failing(CATALOG, error)
        message = QueueMessage("blocked", "ON_ORDER_COMPLETED", "c-1", "user-42")
        blocked.record_received(normalize(parse_envelope(_order("blocked")[0]), "user_id"), "queue")
        with contextlib.suppress(TransientError):
            WorkerService(queue_settings, blocked, FakePublisher(), clock=lambda: NOW).handle(
                push(message)
            )
    mp.setattr(main, "SETTINGS", queue_settings)
    for verdict in (
        (0, {"usersChecked": 2, "entriesChecked": 3, "mismatched": [], "ok": True}),
        (1, {"usersChecked": 2, "entriesChecked": 3, "mismatched": [{"userId": "u"}], "ok": False}),
        (2, {"ok": False, "error": "unexpected error: Firestore down"}),
    ):
        mp.setattr(ledger_main, "run_check", lambda v=verdict: v)
        assert _post(ledger_main.ledger_verify, b"{}", {}) in (200, 503)

    stuck = FakeStore(CATALOG, now=store.now - timedelta(hours=1))
    doc = payloads.order_completed("stuck", "o-stuck", "c-stuck", "user-42", [("gems-100", 1, 199)])
    stuck.record_received(normalize(parse_envelope(payloads.encode(doc)), "user_id"), "queue")
    reconcile_settings = settings(WEBHOOK_MODE="queue", RECONCILE_AFTER_SECONDS="300")
    ReconcileService(reconcile_settings, stuck, FakePublisher(), clock=lambda: NOW).run()
    ReconcileService(
        reconcile_settings, FakeStore(CATALOG), FakePublisher(), clock=lambda: NOW
    ).run()


def log_entry(line: dict[str, Any]) -> dict[str, Any]:
    """A stdout JSON line as Cloud Logging stores it for a Cloud Run revision."""
    payload = dict(line)
    severity = payload.pop("severity", "DEFAULT")
    return {
        "logName": "projects/demo/logs/run.googleapis.com%2Fstdout",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"service_name": "paynow-worker", "revision_name": "paynow-worker-00001-abc"},
        },
        "severity": severity,
        "jsonPayload": payload,
    }


@pytest.fixture(scope="module")
def log_entries() -> list[dict[str, Any]]:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("FUNCTION_TARGET", "PUSH_AUTH", "WEBHOOK_MODE"):
            mp.delenv(name, raising=False)
        mp.setenv("GOOGLE_CLOUD_PROJECT", "demo-unit")
        runtime.settings.cache_clear()
        try:
            main = importlib.import_module("main")
            with contextlib.redirect_stdout(out):
                _run_the_code(main, mp)
        finally:
            runtime.settings.cache_clear()
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    return [log_entry(line) for line in lines]


def _payload(entry: dict[str, Any]) -> dict[str, Any]:
    return dict(entry["jsonPayload"])


# The transient worker failures of normal operation: ordering, contention, a record that
# its message overtook. They are charted, never paged.
NORMAL_WORKER_FAILURES = {
    AwaitingEarlierEvent.code,
    Contention.code,
    EventNotVisible.code,
}

# What each log-based metric must count, said independently of its filter.
EXPECTED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "paynow_queue_published": lambda p: p.get("metric") == observability.QUEUE_PUBLISHED,
    "paynow_queue_publish_latency": lambda p: p.get("metric") == observability.QUEUE_PUBLISHED,
    "paynow_webhook_handled": lambda p: p.get("metric") == observability.WEBHOOK_HANDLED,
    "paynow_webhook_latency": lambda p: p.get("metric") == observability.WEBHOOK_HANDLED,
    "paynow_webhook_rejected": lambda p: p.get("metric") == observability.WEBHOOK_REJECTED,
    "paynow_caller_refused": lambda p: p.get("metric") == observability.CALLER_REFUSED,
    "paynow_worker_processed": lambda p: p.get("metric") == observability.WORKER_PROCESSED,
    "paynow_worker_latency": lambda p: p.get("metric") == observability.WORKER_PROCESSED,
    "paynow_worker_event_age": lambda p: p.get("metric") == observability.WORKER_PROCESSED,
    "paynow_worker_failures": lambda p: p.get("metric") == observability.WORKER_FAILURES,
    "paynow_dead_lettered": lambda p: p.get("metric") == observability.DEAD_LETTERED,
    "paynow_reconcile_stuck_runs": lambda p: (
        p.get("metric") == observability.RECONCILE_REPUBLISHED and p.get("found", 0) > 0
    ),
    "paynow_reconcile_runs": lambda p: p.get("metric") == observability.RECONCILE_REPUBLISHED,
    "paynow_worker_alarming_failures": lambda p: (
        p.get("metric") == observability.WORKER_FAILURES
        and p.get("errorCode") not in NORMAL_WORKER_FAILURES
    ),
    "paynow_ledger_verify": lambda p: p.get("metric") == ledger_main.LEDGER_VERIFY,
}


def test_the_code_wrote_every_kind_of_metric_line(log_entries: list[dict[str, Any]]) -> None:
    kinds = {(_payload(e).get("metric"), _payload(e).get("mode")) for e in log_entries}
    assert {
        (observability.WEBHOOK_HANDLED, "sync"),
        (observability.WEBHOOK_HANDLED, "queue"),
        (observability.QUEUE_PUBLISHED, "queue"),
        (observability.WORKER_PROCESSED, "queue"),
        (observability.WORKER_FAILURES, "queue"),
        (observability.DEAD_LETTERED, "sync"),
        (observability.DEAD_LETTERED, "queue"),
        (observability.WEBHOOK_REJECTED, "sync"),
        (observability.CALLER_REFUSED, None),  # worker and reconcile refusing a token
        (observability.RECONCILE_REPUBLISHED, None),
        (ledger_main.LEDGER_VERIFY, None),
    } <= kinds
    failures = {
        _payload(e).get("errorCode")
        for e in log_entries
        if _payload(e).get("metric") == observability.WORKER_FAILURES
    }
    assert failures >= NORMAL_WORKER_FAILURES  # the alarming metric is shown to leave them out
    outcomes = {
        _payload(e).get("outcome")
        for e in log_entries
        if _payload(e).get("metric") == ledger_main.LEDGER_VERIFY
    }
    assert outcomes == {"ok", "mismatch", "error"}


@pytest.mark.parametrize("name", [f.stem for f in METRIC_FILES])
def test_each_metric_filter_selects_exactly_its_lines(
    name: str, metrics: dict[str, dict[str, Any]], log_entries: list[dict[str, Any]]
) -> None:
    metric = metrics[name]
    terms = parse_filter(metric["filter"])
    chosen = [e for e in log_entries if matches(e, terms)]
    expected = [e for e in log_entries if EXPECTED[name](_payload(e))]
    assert chosen and chosen == expected
    for entry in chosen:
        payload = _payload(entry)
        for label, extractor in (metric.get("labelExtractors") or {}).items():
            field = EXTRACT.fullmatch(extractor).group(1)  # type: ignore[union-attr]
            assert payload.get(field) not in (None, ""), (label, payload)
        if "valueExtractor" in metric:
            field = EXTRACT.fullmatch(metric["valueExtractor"]).group(1)  # type: ignore[union-attr]
            assert isinstance(payload.get(field), int | float), payload


def test_filters_name_only_metrics_the_code_defines(metrics: dict[str, dict[str, Any]]) -> None:
    """Every jsonPayload.metric / latencyMetric a filter names is a constant of
    functions/paynow/observability.py, and every constant there is counted by a metric."""
    defined = {
        value
        for key, value in vars(observability).items()
        if key.isupper() and isinstance(value, str) and value.startswith("paynow_")
    } | {ledger_main.LEDGER_VERIFY}
    named = {
        value
        for m in metrics.values()
        for path, _, value in parse_filter(m["filter"])
        if path in ("jsonPayload.metric", "jsonPayload.latencyMetric")
    }
    assert named <= defined
    assert defined <= named
    assert EXPECTED.keys() == metrics.keys()


# --- infra/steps/monitoring.sh -------------------------------------------------------------

PROJECT = "demo-monitoring-plan"
CHANNELS = (
    f"projects/{PROJECT}/notificationChannels/111,projects/{PROJECT}/notificationChannels/222"
)


def words(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith("--")]


def flags(argv: list[str]) -> dict[str, str]:
    return {a[2:].partition("=")[0]: a.partition("=")[2] for a in argv if a.startswith("--")}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the plan's copies are kept (MONITORING_RENDER_DIR), to read and replay them."""
    return tmp_path_factory.mktemp("monitoring-rendered")


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory, rendered: Path) -> Result:
    tmp = tmp_path_factory.mktemp("monitoring-plan")
    trap = make_trap(tmp)
    env_file = write_env(tmp / "plan.env", PROJECT=PROJECT, NOTIFICATION_CHANNELS=CHANNELS)
    env = {**base_env(tmp, trap.bin), "MONITORING_RENDER_DIR": str(rendered)}
    result = run_script(STEP, str(env_file), "--dry-run", env=env)
    assert result.returncode == 0, result.output
    assert trap.calls() == []
    return result


def test_a_dry_run_writes_nothing_in_the_repository(tmp_path: Path) -> None:
    """Without MONITORING_RENDER_DIR the copies live in a temporary directory, gone after."""
    trap = make_trap(tmp_path)
    env_file = write_env(tmp_path / "plan.env", PROJECT=PROJECT)
    started = time.time_ns()
    result = run_script(STEP, str(env_file), "--dry-run", env=base_env(tmp_path, trap.bin))
    assert result.returncode == 0, result.output
    copies = [
        Path(value)
        for c in result.commands()
        for key, value in flags(c).items()
        if key == "config-from-file"
    ]
    copies += [
        Path(value)
        for c in result.commands()
        for key, value in flags(c).items()
        if key == "policy-from-file"
    ]
    assert len(copies) == len(METRIC_FILES) + 1 + len(ALERT_FILES)  # metrics, dashboard, policies
    for copy in copies:
        assert ROOT not in copy.parents, copy
        assert not copy.exists() and not copy.parent.exists(), copy
    old_place = ROOT / ".local" / "monitoring"
    written = [p for p in old_place.rglob("*") if p.stat().st_mtime_ns >= started]
    assert written == []


def test_the_plan_applies_every_definition_once(plan: Result, rendered: Path) -> None:
    commands = plan.commands()
    creates = [c for c in commands if is_mutation(c)]
    metric_files = {
        words(c)[3]: flags(c)["config-from-file"]
        for c in creates
        if words(c)[:3] == ["logging", "metrics", "create"]
    }
    assert metric_files == {f.stem: str(rendered / "metrics" / f.name) for f in METRIC_FILES}
    policies = [
        flags(c) for c in creates if words(c)[:4] == ["alpha", "monitoring", "policies", "create"]
    ]
    assert sorted(p["policy-from-file"] for p in policies) == [
        str(rendered / "alerts" / f.name) for f in ALERT_FILES
    ]
    for policy in policies:
        labels = dict(pair.split("=") for pair in policy["user-labels"].split(","))
        assert labels["paynow_alert"] == Path(policy["policy-from-file"]).stem
        assert re.fullmatch(r"[0-9a-f]{16}", labels["paynow_config"])
        assert policy["notification-channels"] == CHANNELS
    (board,) = [flags(c) for c in creates if words(c)[:3] == ["monitoring", "dashboards", "create"]]
    assert board["config-from-file"] == str(rendered / "dashboard.json")
    assert all(flags(c)["project"] == PROJECT for c in commands)
    order = [words(c)[0] for c in commands]
    assert order.index("logging") < order.index("alpha") < order.index("monitoring")


def test_applied_copies_carry_the_digest_and_nothing_else(plan: Result, rendered: Path) -> None:
    for source in METRIC_FILES:
        copy = (rendered / "metrics" / source.name).read_text().splitlines()
        original = source.read_text().splitlines()
        changed = [(a, b) for a, b in zip(original, copy, strict=True) if a != b]
        assert len(changed) == 1 and re.fullmatch(
            re.escape(changed[0][0]) + r" \[config [0-9a-f]{16}\]", changed[0][1]
        )
    rendered_board = json.loads((rendered / "dashboard.json").read_text())
    labels = rendered_board.pop("labels")
    assert rendered_board == json.loads(DASHBOARD_FILE.read_text())
    assert re.fullmatch(r"[0-9a-f]{16}", labels["paynow_config"])


def test_deploy_runs_monitoring_last(tmp_path: Path) -> None:
    trap = make_trap(tmp_path)
    env_file = write_env(tmp_path / "deploy.env", PROJECT=PROJECT)
    result = run_script(
        "infra/deploy.sh", str(env_file), "--dry-run", env=base_env(tmp_path, trap.bin)
    )
    assert result.returncode == 0, result.output
    steps = re.findall(r"^### (\S+)$", result.stderr, re.MULTILINE)
    assert steps[-2:] == ["scheduler", "monitoring"]
    commands = [words(c)[:3] for c in result.commands()]
    assert commands[-1] == ["functions", "describe", "paynow-webhook"]  # the URL it prints
    assert commands[-3:-1] == [
        ["monitoring", "dashboards", "list"],
        ["monitoring", "dashboards", "create"],
    ]


@pytest.mark.parametrize(
    "channels",
    ["projects/p1/notificationChannels/abc", "projects/p1/notificationChannels/1,", "email:me@x"],
)
def test_notification_channels_are_checked_before_anything_runs(
    tmp_path: Path, channels: str
) -> None:
    trap = make_trap(tmp_path)
    env_file = write_env(tmp_path / "bad.env", PROJECT=PROJECT, NOTIFICATION_CHANNELS=channels)
    result = run_script(STEP, str(env_file), "--dry-run", env=base_env(tmp_path, trap.bin))
    assert result.returncode == 1 and "NOTIFICATION_CHANNELS must be" in result.stderr
    assert result.commands() == [] and trap.calls() == []


@dataclass
class Story:
    project: str
    fake: FakeGcloud
    runs: dict[str, FakeRun]


def _run(fake: FakeGcloud, env_file: Path) -> FakeRun:
    return fake.run(STEP, env_file)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, gcloud_config: Path) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("monitoring-story")
    project = project_id()
    fake = make_fake(tmp, gcloud_config, project)
    # Monitoring does not know a new metric for its first policy write; retry at once. The
    # copies are kept: the last test hands the commands to the real gcloud.
    fake.env.update(
        FAKE_GCLOUD_METRIC_LAG="1",
        MONITORING_RETRY_SECONDS="0",
        MONITORING_RENDER_DIR=str(tmp / "rendered"),
    )
    env_file = write_env(tmp / "story.env", PROJECT=project)
    runs = {"first": _run(fake, env_file), "second": _run(fake, env_file)}
    state = fake.state()
    del state["log_metrics"]["paynow_worker_failures"]  # deleted by hand
    published = state["log_metrics"]["paynow_queue_published"]  # an older definition
    published["description"] = "Events published [config 0000000000000000]"
    published["filter"] = 'jsonPayload.metric="paynow_queue_published"'
    policies = state["alert_policies"]
    drifted = next(
        p for p in policies.values() if p["userLabels"]["paynow_alert"] == "queue-backlog"
    )
    drifted["userLabels"]["paynow_config"] = "0000000000000000"  # an older definition
    drifted["conditions"][0]["conditionThreshold"]["thresholdValue"] = 5
    policies[f"projects/{project}/alertPolicies/9999"] = {
        "name": f"projects/{project}/alertPolicies/9999",
        "displayName": "PayNow: an alert since retired",
        "userLabels": {"paynow_alert": "retired-alert", "paynow_config": "1"},
    }
    (board,) = state["dashboards"].values()
    board["labels"]["paynow_config"] = "edited-by-hand"
    fake.state_file.write_text(json.dumps(state))
    runs["repair"] = _run(fake, env_file)
    channels = f"projects/{project}/notificationChannels/42"
    runs["channels"] = _run(
        fake, write_env(tmp / "channels.env", PROJECT=project, NOTIFICATION_CHANNELS=channels)
    )
    yield Story(project, fake, runs)


def test_a_first_run_creates_everything_waiting_for_new_metrics(story: Story) -> None:
    first = story.runs["first"]
    assert first.result.returncode == 0, first.result.output
    state = first.state
    assert set(state["log_metrics"]) == {f.stem for f in METRIC_FILES}
    for name, metric in state["log_metrics"].items():
        assert re.search(r" \[config [0-9a-f]{16}\]$", metric["description"]), name
    by_alert = {p["userLabels"]["paynow_alert"]: p for p in state["alert_policies"].values()}
    assert set(by_alert) == {f.stem for f in ALERT_FILES}
    assert all(p["notificationChannels"] == [] for p in by_alert.values())
    backlog = json.loads((MONITORING / "alerts" / "queue-backlog.json").read_text())
    assert by_alert["queue-backlog"]["conditions"] == backlog["conditions"]
    (board,) = state["dashboards"].values()
    assert board["displayName"] == "PayNow pipeline" and set(board["labels"]) == {"paynow_config"}
    assert "Monitoring does not know a new log-based metric yet" in first.result.stderr
    # The APIs are the bootstrap's: the deployer may not enable any (no serviceUsageAdmin).
    assert not [c for c in first.calls if c["argv"][:2] == ["services", "enable"]]


def test_a_second_run_changes_nothing(story: Story) -> None:
    second = story.runs["second"]
    assert second.result.returncode == 0, second.result.output
    assert second.mutations() == []
    assert second.state == story.runs["first"].state


def test_drift_is_repaired_and_only_that(story: Story) -> None:
    repair = story.runs["repair"]
    assert repair.result.returncode == 0, repair.result.output
    changed = [words(m)[:4] for m in repair.mutations()]
    assert changed == [
        ["logging", "metrics", "update", "paynow_queue_published"],
        ["logging", "metrics", "create", "paynow_worker_failures"],
        ["alpha", "monitoring", "policies", "update"],
        ["monitoring", "dashboards", "update", "d1000"],
    ]
    first = story.runs["first"].state
    assert repair.state["log_metrics"] == first["log_metrics"]
    assert repair.state["dashboards"] == {
        name: {**board, "etag": repair.state["dashboards"][name]["etag"]}
        for name, board in first["dashboards"].items()
    }
    restored = {k: v for k, v in repair.state["alert_policies"].items() if not k.endswith("/9999")}
    assert restored == first["alert_policies"]
    assert (
        "paynow_alert=retired-alert) has no file in infra/monitoring/alerts" in repair.result.stderr
    )


def test_notification_channels_reach_every_policy(story: Story) -> None:
    run = story.runs["channels"]
    assert run.result.returncode == 0, run.result.output
    updates = [flags(m) for m in run.mutations()]
    # every policy once (more calls only where Monitoring did not know a recreated metric yet)
    updated = {
        dict(pair.split("=") for pair in u["update-user-labels"].split(","))["paynow_alert"]
        for u in updates
    }
    assert updated == {f.stem for f in ALERT_FILES}
    channel = f"projects/{story.project}/notificationChannels/42"
    assert all(u["set-notification-channels"] == channel for u in updates)
    mine = [p for p in run.state["alert_policies"].values() if not p["name"].endswith("/9999")]
    assert all(p["notificationChannels"] == [channel] for p in mine)


def test_gcloud_accepts_every_monitoring_command(
    story: Story, plan: Result, gcloud_config: Path
) -> None:
    """The real CLI parses each command (files included) and reaches the API with it."""
    commands: list[list[str]] = []
    ran = [c["argv"] for run in story.runs.values() for c in run.calls]
    for argv in ran + plan.commands():
        if argv[0] in ("logging", "alpha", "monitoring") and argv not in commands:
            commands.append(argv)
    for needed in (
        ["logging", "metrics", "update"],
        ["alpha", "monitoring", "policies", "update"],
        ["monitoring", "dashboards", "update"],
    ):
        assert [c for c in commands if c[: len(needed)] == needed], needed
    outcomes = gcloud_against_failing_api(commands, gcloud_config, 403)
    refused = [
        f"gcloud {' '.join(o['argv'])} -> exit {o['exit']}, requests {o['reached']}: {o['stderr'][-300:]}"
        for o in outcomes
        if o["exit"] != 1 or o["reached"] < 1
    ]
    assert not refused, "\n".join(refused)
