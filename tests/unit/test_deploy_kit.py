"""The operations kit in deploy/: the alert rules pass promtool, the dashboard is well formed,
and both reference only metrics the worker exports.

Exported metrics are derived from code, not copied: the product's from
`webhooks.core.metrics`, the SDK's from the sdk-core source that ships inside the installed
`temporalio` package (`temporal_` prefix, as Temporal's Prometheus exporter names them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

import pytest
import temporalio
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from webhooks.core import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "webhooks-rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "webhooks-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "webhooks-dashboard.json"
SDK_CORE = Path(temporalio.__file__).parent / "bridge" / "sdk-core" / "crates"

PROMETHEUS_OWN = {"up"}
"""Series Prometheus itself writes for every scrape target."""
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "offset", "bool"}
PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan"}


def sdk_metric_names() -> set[str]:
    """Every metric name the installed SDK's core defines, as exported (`temporal_...`)."""
    sources = [
        SDK_CORE / "sdk-core" / "src" / "telemetry" / "metrics.rs",
        SDK_CORE / "client" / "src" / "metrics.rs",
        SDK_CORE / "common" / "src" / "telemetry" / "metrics.rs",
    ]
    pattern = re.compile(r'(?:_NAME: &str =\s*|name: )"([a-z][a-z0-9_]*)"')
    names = {m for path in sources for m in pattern.findall(path.read_text())}
    assert {"workflow_task_execution_failed", "worker_task_slots_available"} <= names
    exported = {f"temporal_{n}" for n in names}
    # Histograms (any *_latency) are exposed as three series each.
    return exported | {f"{n}_{s}" for n in exported for s in ("bucket", "sum", "count")}


def product_series() -> set[str]:
    return {s for m in metrics.ALL for s in m.series()}


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def metric_names_in(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, labels, keywords dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries, $__range
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # grouping labels
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [
        v["query"] for v in board["templating"]["list"] if v["type"] == "query"
    ]  # label_values(metric, label)
    return exprs


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, task_queue) (rate(a_bucket{job=~"$job",le="0.1"}'
        "[5m]))) / ignoring(x) b offset 1h > 0 and absent(up) or time() - max(c:d:ratio)"
    )
    assert metric_names_in(expr) == {"a_bucket", "b", "up", "c:d:ratio"}
    assert metric_names_in("label_values(webhooks_attempts_total, job)") == {
        "webhooks_attempts_total",
        "job",
    }


def _referenced(exprs: list[str]) -> set[str]:
    names = {n for e in exprs for n in metric_names_in(e)}
    # label_values(metric, label): the second argument is a label name.
    return names - {"job"}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_only_exported_metrics_are_referenced(source: str) -> None:
    exprs = [r["expr"] for r in rules()] if source == "rules" else dashboard_exprs()
    referenced = _referenced(exprs)
    known = product_series() | sdk_metric_names() | PROMETHEUS_OWN | recorded_names()
    assert referenced, "no expression found"
    assert referenced - known == set()


def test_the_kit_covers_the_product_metrics() -> None:
    """Every product metric is on the dashboard; the alerts cover what the issue names."""
    on_board = _referenced(dashboard_exprs())
    for metric in metrics.ALL:
        if metric is metrics.GAUGES_REFRESHED:
            continue  # watched by an alert, not worth a panel
        assert set(metric.series()) & on_board, metric.name
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert {
        "WebhooksDeadLettersGrowing",
        "WebhooksCircuitsOpenLong",
        "WebhooksLatencySLOBurnFast",
        "WebhooksLatencySLOBurnSlow",
        "WebhooksAttemptFailureRatioHigh",
        "WebhooksWorkflowTaskFailures",
        "WebhooksWorkerDown",
    } <= alerts


def test_the_slo_rules_count_under_the_objective() -> None:
    """The burn-rate rules read the bucket at the SLO bound, which must be a real bucket."""
    assert metrics.SLO_LATENCY_SECONDS in metrics.FIRST_ATTEMPT_DELAY.buckets
    slo = [r["expr"] for r in rules() if r.get("record", "").startswith("webhooks:first")]
    assert slo
    assert all(f'le="{metrics.SLO_LATENCY_SECONDS:g}"' in e for e in slo)


def test_no_label_can_hold_an_id() -> None:
    forbidden = {"endpoint_id", "account_id", "url", "event_id", "delivery_id", "event_type"}
    assert not {label for m in metrics.ALL for label in m.labels} & forbidden


def promtool(*args: str, cwd: Path = ROOT) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: scripts/test installs Debian's prometheus package"
    done = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(RULES))


def test_promtool_alert_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)


# The subset of Grafana's dashboard model (schemaVersion 39) this dashboard uses; anything
# else Grafana accepts is allowed through.


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel)


class GridPos(_Loose):
    h: int = Field(ge=1)
    w: int = Field(ge=1, le=24)
    x: int = Field(ge=0, le=23)
    y: int = Field(ge=0)

    @model_validator(mode="after")
    def _fits(self) -> GridPos:
        assert self.x + self.w <= 24, "panel wider than the grid"
        return self


class DataSourceRef(_Loose):
    type: Literal["prometheus"]
    uid: str


class Target(_Loose):
    ref_id: str = Field(pattern=r"^[A-Z]$")
    expr: str = Field(min_length=1)
    datasource: DataSourceRef
    legend_format: str


class Panel(_Loose):
    id: int
    type: Literal["row", "timeseries", "stat", "gauge", "table", "bargauge"]
    title: str = Field(min_length=1)
    grid_pos: GridPos
    targets: list[Target] = []
    datasource: DataSourceRef | None = None

    @model_validator(mode="after")
    def _queries(self) -> Panel:
        assert (self.type == "row") == (not self.targets), f"{self.title}: targets"
        return self


class Variable(_Loose):
    name: str
    type: Literal["datasource", "query", "custom", "interval"]
    query: str


class Templating(_Loose):
    list: list[Variable]


class Dashboard(_Loose):
    uid: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    title: str
    schema_version: int = Field(ge=36)
    panels: list[Panel]
    templating: Templating
    time: dict[str, str]


def test_the_dashboard_loads() -> None:
    board = Dashboard.model_validate_json(DASHBOARD.read_text())
    ids = [p.id for p in board.panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board.panels:
        g = panel.grid_pos
        area = {(x, y) for x in range(g.x, g.x + g.w) for y in range(g.y, g.y + g.h)}
        assert not cells & area, f"{panel.title} overlaps another panel"
        cells |= area
    variables = {v.name for v in board.templating.list}
    for panel in board.panels:
        for target in panel.targets:
            used = set(re.findall(r"\$(\w+)", target.expr)) - {"__range", "__rate_interval"}
            assert used <= variables, f"{panel.title}: undefined {used - variables}"
