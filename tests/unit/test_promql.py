"""The PromQL metric-name tokenizer the dashboard and alert tests rely on."""

from __future__ import annotations

import pytest

from tests.promql import exported_names, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param("up", {"up"}, id="bare"),
        pytest.param(
            'sum by (model_version, code) (rate(yolofleet_requests_total{code!="OK"}[5m]))',
            {"yolofleet_requests_total"},
            id="aggregation-matchers-range",
        ),
        pytest.param(
            "histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[$__rate_interval])))",
            {"x_seconds_bucket"},
            id="quantile-grafana-variable",
        ),
        pytest.param(
            "(time() - max by (group) (a)) > 1800 and on (group) max by (group) (b) == 1",
            {"a", "b"},
            id="time-and-on",
        ),
        pytest.param("(sum(x) or vector(0)) < 1e3", {"x"}, id="or-vector-exponent"),
        pytest.param('a{name="sum(b)"} offset 5m / ignoring(x) c', {"a", "c"}, id="string-offset"),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_include_the_suffixes_of_each_type() -> None:
    page = (
        "# HELP c_total C\n# TYPE c_total counter\n"
        "# HELP h H\n# TYPE h histogram\n"
        "# HELP g G\n# TYPE g gauge\ng 1\n"
    )

    names = exported_names([page])

    assert {"c_total", "h_bucket", "h_count", "h_sum", "g"} <= names
    assert "h" not in names
