"""`ctl`'s durations, help text, `version`, and `status --watch` across broken streams (against
an in-process scripted ControlPlane on a real gRPC server on 127.0.0.1:0).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from control_plane.ctl import cli as ctl
from control_plane.ctl import common
from control_plane.ctl.args import duration
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90", 90.0, id="plain-seconds"),
        pytest.param("1.5", 1.5, id="fractional-seconds"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param("250ms", 0.25, id="milliseconds"),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("-1", id="negative"),
        pytest.param("-5m", id="negative-unit"),
        pytest.param("5x", id="unknown-unit"),
        pytest.param("m", id="unit-only"),
        pytest.param("", id="empty"),
        pytest.param("nan", id="nan"),
        pytest.param("inf", id="infinite"),
        pytest.param("1d", id="days-are-not-go"),
    ],
)
def test_bad_durations_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="like 30s, 5m or 1h"):
        duration(text)


def _actions(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    # argparse lists a parser's actions only in this attribute; we read it, never change it.
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _actions(child, f"{path} {name}")


def test_every_argument_of_every_command_has_help() -> None:
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, action in _actions(ctl.build_parser(), "ctl")
        if not action.help or action.help == argparse.SUPPRESS
    ]

    assert missing == []


def test_every_command_has_help() -> None:
    listed = ctl.build_parser().format_help()

    assert "version" in listed
    for _, action in _actions(ctl.build_parser(), "ctl"):
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            assert helped == set(action.choices), f"commands without help: {action.choices}"


def test_version_needs_no_control_plane(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(common.ENV_ADDRESS, raising=False)

    code = ctl.main(["version"])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.startswith("ctl ")
    assert "yolofleet.v1" in out


@dataclass
class ScriptedWatch(pb_grpc.ControlPlaneServicer):
    """Each WatchRollout call plays the next session: its rollouts, then an end or an error."""

    sessions: list[tuple[list[pb.Rollout], grpc.StatusCode | None]]
    calls: int = 0
    requests: list[pb.StartRolloutRequest] = field(default_factory=list)

    def WatchRollout(self, request, context):  # type: ignore[no-untyped-def]
        rollouts, ending = self.sessions[min(self.calls, len(self.sessions) - 1)]
        self.calls += 1
        yield from rollouts
        if ending is not None:
            context.abort(ending, "replica going away")

    def StartRollout(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        return pb.Rollout(group=request.group, phase="progressing", steps=[10, 100])


def _serve(servicer: ScriptedWatch) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ControlPlaneServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None).wait()


def _r(phase: str, step: int = 0) -> pb.Rollout:
    return pb.Rollout(group="zone-a", phase=phase, step_index=step, steps=[10, 50, 100])


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param(None, id="stream-ended"),
        pytest.param(grpc.StatusCode.UNAVAILABLE, id="unavailable"),
        pytest.param(grpc.StatusCode.RESOURCE_EXHAUSTED, id="replica-full"),
    ],
)
def test_watch_reconnects_and_resumes_from_the_state_it_sees(
    capsys: pytest.CaptureFixture[str], ending: grpc.StatusCode | None
) -> None:
    script = ScriptedWatch(
        sessions=[
            ([_r("progressing"), _r("holding")], ending),
            ([_r("holding"), _r("analyzing")], ending),
            ([_r("analyzing"), _r("rolled_back")], None),
        ]
    )

    for address in _serve(script):
        code = ctl.main(["--control-plane", address, "status", "zone-a", "--watch"])

    out, err = capsys.readouterr()
    assert code == 1
    assert [line.split(",")[0] for line in out.splitlines()] == [
        "zone-a: progressing",
        "zone-a: holding",
        "zone-a: analyzing",
        "zone-a: rolled_back",
    ]
    assert script.calls == 3
    assert err.count("lost the watch of zone-a") == 2


def test_watch_of_a_control_plane_never_reached_fails_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = ScriptedWatch(sessions=[([], grpc.StatusCode.UNAVAILABLE)])

    for address in _serve(script):
        code = ctl.main(["--control-plane", address, "status", "zone-a", "--watch"])

    _, err = capsys.readouterr()
    assert code == common.EXIT_UNAVAILABLE
    assert script.calls == 1
    assert "unavailable" in err


def test_watch_that_keeps_failing_times_out_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = ScriptedWatch(sessions=[([_r("paused")], grpc.StatusCode.UNAVAILABLE)])

    for address in _serve(script):
        code = ctl.main(
            ["--control-plane", address, "status", "zone-a", "--watch", "--timeout", "1s"]
        )

    out, err = capsys.readouterr()
    assert code == common.EXIT_TIMEOUT
    assert out.count("zone-a: paused") == 1
    assert err.endswith("did not settle within 1s (last phase: paused)\n")


def test_hold_takes_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    script = ScriptedWatch(sessions=[([], None)])

    for address in _serve(script):
        argv = ["rollout", "m", "--group", "zone-a", "--canary", "10", "--hold", "5m"]
        code = ctl.main(["--control-plane", address, *argv, "--report-deadline", "2m"])

    capsys.readouterr()
    assert code == 0
    assert script.requests[0].hold_s == 300.0
    assert script.requests[0].thresholds.report_deadline_s == 120.0
