"""Metric names in PromQL expressions, and the names a /metrics page lets queries use.

Not a PromQL parser: a tokenizer good enough for our own dashboards and alerts. It drops string
literals, label matchers, range and subquery brackets, grouping clauses, Grafana variables and
numbers; what is left and not followed by ``(`` (a function or aggregation) or a keyword is a
metric name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
)
GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(GROUPING, " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in KEYWORDS and name not in ("by", "without"):
            names.add(name)
    return names


def exported_names(pages: Iterable[str]) -> set[str]:
    """Every series name a query may use against these /metrics pages (suffixes included)."""
    names: set[str] = set()
    for page in pages:
        for family in text_string_to_metric_families(page):
            names.update(f"{family.name}{suffix}" for suffix in SUFFIXES.get(family.type, ("",)))
            names.update(sample.name for sample in family.samples)
    return names
