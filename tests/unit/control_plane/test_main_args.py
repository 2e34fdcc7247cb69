"""`python -m control_plane` flags: defaults that survive a restart, and refusals."""

from __future__ import annotations

import pytest

from control_plane.__main__ import parse_args


def test_defaults_give_a_fixed_artifact_port_and_no_url() -> None:
    config = parse_args(["--consul", "127.0.0.1:8500"])

    assert (config.port, config.artifact_port, config.artifact_url) == (50070, 8081, None)


def test_artifact_url_loses_its_trailing_slash() -> None:
    config = parse_args(["--consul", "c:8500", "--artifact-url", "https://cp.example:8443/x/"])

    assert config.artifact_url == "https://cp.example:8443/x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--artifact-url", "cp:8081"], "--artifact-url: must be an http(s)://HOST"),
        (["--artifact-url", "ftp://cp/"], "--artifact-url: must be an http(s)://HOST"),
        (["--artifact-url", "http:///x"], "--artifact-url: must be an http(s)://HOST"),
        (["--interval", "0"], "--interval 0.0 must be above 0 seconds"),
        (["--prometheus-url", "prom:9090"], "--prometheus-url: must be an http(s)://HOST"),
        (["--prometheus-node-label", "node-id"], "'node-id' is not a Prometheus label name"),
        (["--prometheus-node-label", "sha256"], "'sha256' is a label of the node's own series"),
    ],
)
def test_bad_flags_exit_2_with_one_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--consul", "c:8500", *argv])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_canary_figures_come_from_getstats_unless_a_prometheus_url_is_given() -> None:
    default = parse_args(["--consul", "c:8500"])
    prometheus = parse_args(
        [
            "--consul", "c:8500",
            "--prometheus-url", "http://prometheus.monitoring:9090/",
            "--prometheus-node-label", "pod",
            "--prometheus-selector", 'job="yolofleet",group="{group}"',
        ]
    )  # fmt: skip

    assert (default.prometheus_url, default.prometheus_node_label) == (None, "node_id")
    assert default.prometheus_selector == ""
    assert prometheus.prometheus_url == "http://prometheus.monitoring:9090"
    assert prometheus.prometheus_node_label == "pod"
    assert prometheus.prometheus_selector == 'job="yolofleet",group="{group}"'
