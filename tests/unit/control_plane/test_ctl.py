"""`ctl` against an in-process fake ControlPlane on a real gRPC server on 127.0.0.1:0."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from control_plane.ctl import args as ctl_args
from control_plane.ctl import cli as ctl
from control_plane.ctl import common
from control_plane.ctl import render as fmt
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc


def _check() -> pb.CheckResult:
    return pb.CheckResult(
        name="error_rate",
        outcome="pass",
        canary_value=0.01,
        baseline_value=0.02,
        threshold=0.05,
        canary_samples=120,
        baseline_samples=980,
        reason="canary within threshold",
    )


def _rollout(phase: str = "progressing", **overrides: object) -> pb.Rollout:
    fields: dict[str, object] = {
        "group": "zone-a",
        "phase": phase,
        "stable": "shapes-v1",
        "canary": "shapes-v2",
        "canary_nodes": ["n1"],
        "step_index": 0,
        "steps": [10, 50, 100],
        "reason": "holding step 1",
        "checks": [_check()],
        "revision": 42,
        "phase_since_unix": 1_700_000_000.0,
        "intent_id": "i-1",
    }
    fields.update(overrides)
    return pb.Rollout(**fields)  # type: ignore[arg-type]


MODEL = pb.ModelRecord(
    name="shapes-v2",
    uri="http://cp/artifacts/shapes-v2",
    sha256="ab" * 32,
    size=6_200_000,
    format="pt",
    class_names=["circle", "square"],
    input_size=640,
    task="detect",
    created_unix=1_700_000_000.0,
    parent="shapes-v1",
    notes="more squares",
)


@dataclass
class FakeControlPlane(pb_grpc.ControlPlaneServicer):
    """Answers every RPC from canned values, records calls, and can fail them all."""

    calls: list[str] = field(default_factory=list)
    requests: list[object] = field(default_factory=list)
    error: tuple[grpc.StatusCode, str] | None = None
    rollout: pb.Rollout = field(default_factory=_rollout)
    applied: pb.Rollout | None = None
    """What WatchRollout shows once an intent RPC was made: the leader's tick recorded the
    outcome ``result`` (with ``detail``) of intent ``i-1`` in it."""
    result: str = "applied"
    detail: str = "done"
    watch_script: list[pb.Rollout] = field(default_factory=list)

    def _answer(self, name: str, request: object, context: grpc.ServicerContext) -> None:
        self.calls.append(name)
        self.requests.append(request)
        if self.error is not None:
            context.abort(*self.error)

    def _rollout_rpc(self, name: str, request: object, context: grpc.ServicerContext) -> pb.Rollout:
        self._answer(name, request, context)
        return self.rollout

    def StartRollout(self, request, context):  # type: ignore[no-untyped-def]
        return self._rollout_rpc("StartRollout", request, context)

    def Pause(self, request, context):  # type: ignore[no-untyped-def]
        return self._rollout_rpc("Pause", request, context)

    def Resume(self, request, context):  # type: ignore[no-untyped-def]
        return self._rollout_rpc("Resume", request, context)

    def Promote(self, request, context):  # type: ignore[no-untyped-def]
        return self._rollout_rpc("Promote", request, context)

    def Abort(self, request, context):  # type: ignore[no-untyped-def]
        return self._rollout_rpc("Abort", request, context)

    def Undo(self, request, context):  # type: ignore[no-untyped-def]
        return self._rollout_rpc("Undo", request, context)

    def Adopt(self, request, context):  # type: ignore[no-untyped-def]
        return self._rollout_rpc("Adopt", request, context)

    def GetRollout(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("GetRollout", request, context)
        return pb.Rollout(**{**_fields(self.rollout), "group": request.group})

    def WatchRollout(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("WatchRollout", request, context)
        yield from self.watch_script
        mutations = {"StartRollout", "Pause", "Resume", "Promote", "Abort", "Undo", "Adopt"}
        if self.applied is not None and mutations & set(self.calls):
            outcome = pb.IntentOutcome(id="i-1", result=self.result, detail=self.detail)
            fields = {**_fields(self.applied), "group": request.group, "intent_id": ""}
            yield pb.Rollout(**{**fields, "intents": [*self.applied.intents, outcome]})
        while context.is_active():  # never settles: wait for the client's deadline
            time.sleep(0.01)

    def History(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("History", request, context)
        entry = pb.HistoryEntry(
            model="shapes-v1",
            previous="shapes-v0",
            outcome="completed",
            reason="all steps passed",
            started_unix=1_700_000_000.0,
            ended_unix=1_700_000_600.0,
        )
        return pb.HistoryResponse(entries=[entry])

    def ListNodes(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("ListNodes", request, context)
        node = pb.NodeInfo(
            group="zone-a",
            node_id="n1",
            phase="serving",
            model="shapes-v2",
            sha256="ab" * 32,
            endpoint="10.0.0.1:50051",
            device="cuda:0",
            updated_unix=1_700_000_000.0,
        )
        return pb.ListNodesResponse(nodes=[node])

    def ListGroups(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("ListGroups", request, context)
        return pb.ListGroupsResponse(groups=["zone-a", "zone-b"])

    def RegisterModel(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("RegisterModel", request, context)
        return MODEL

    def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("ListModels", request, context)
        return pb.ListModelsResponse(models=[MODEL])

    def GetModel(self, request, context):  # type: ignore[no-untyped-def]
        self._answer("GetModel", request, context)
        return MODEL


def _fields(message: pb.Rollout) -> dict[str, object]:
    return {f.name: value for f, value in message.ListFields()}


@dataclass
class Harness:
    fake: FakeControlPlane
    address: str
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, str, str]:
        code = ctl.main(["--control-plane", self.address, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def cp(capsys: pytest.CaptureFixture[str]) -> Iterator[Harness]:
    fake = FakeControlPlane()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ControlPlaneServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield Harness(fake=fake, address=f"127.0.0.1:{port}", capsys=capsys)
    server.stop(grace=None).wait()


# --- mutations -----------------------------------------------------------------------------


def test_rollout_prints_one_line_and_sends_the_spec(cp: Harness) -> None:
    argv = ("rollout", "shapes-v2", "--group", "zone-a", "--canary", "10")
    cp.fake.rollout = _rollout("completed", canary="", canary_nodes=[], revision=41)
    cp.fake.applied = _rollout()

    code, out, err = cp.run(*argv, "--steps", "10,50,100", "--hold", "30")

    assert (code, err) == (0, "")
    assert out == "rollout of shapes-v2 to zone-a started: 10% canary on n1 (revision 42)\n"
    request = cp.fake.requests[0]
    assert isinstance(request, pb.StartRolloutRequest)
    assert (request.group, request.model, request.canary_percent) == ("zone-a", "shapes-v2", 10)
    assert (list(request.steps), request.hold_s) == ([10, 50, 100], 30.0)


def test_rollout_without_hold_leaves_it_unset(cp: Harness) -> None:
    cp.run("rollout", "shapes-v2", "--group", "zone-a", "--canary", "10", "--wait", "0")

    request = cp.fake.requests[0]
    assert isinstance(request, pb.StartRolloutRequest)
    assert not request.HasField("hold_s")
    assert list(request.steps) == []


def test_rollout_sends_only_the_thresholds_given(cp: Harness) -> None:
    argv = ("rollout", "shapes-v2", "--group", "zone-a", "--canary", "10")

    code, _, err = cp.run(
        *argv, "--wait", "0", "--max-p99-ratio", "2", "--min-samples", "50", "--failures", "1",
        "--max-confidence-drift", "0.05", "--report-deadline", "30",
    )  # fmt: skip

    assert (code, err) == (0, "")
    request = cp.fake.requests[0]
    assert isinstance(request, pb.StartRolloutRequest)
    given = {f.name: v for f, v in request.thresholds.ListFields()}
    assert given == {
        "p99_latency_ratio": 2.0,
        "min_samples": 50,
        "consecutive_failures": 1,
        "confidence_drift": 0.05,
        "report_deadline_s": 30.0,
    }


def test_every_threshold_flag_names_a_field_of_the_api() -> None:
    api = {f.name for f in pb.Thresholds.DESCRIPTOR.fields}

    assert {field for field, _, _ in ctl_args.THRESHOLD_FLAGS.values()} == api


APPLIED = {
    "paused": "paused by the operator while holding at step 1/3 (10%)",
    "holding": "resumed; step 1/3 (10%): holding",
    "progressing": "promoted by the operator at step 1/3 (10%); step 2/3",
    "completed": "fully promoted by the operator at step 1/3 (10%); shapes-v2 is now stable",
    "aborted": "aborted by the operator at step 1/3 (10%); every node goes back to shapes-v1",
    "rolled_back": "undone by the operator: stable shapes-v1 -> shapes-v0",
}


@pytest.mark.parametrize(
    ("argv", "rpc", "phase", "expected"),
    [
        pytest.param(["pause", "zone-a"], "Pause", "paused", "pause of zone-a", id="pause"),
        pytest.param(["resume", "zone-a"], "Resume", "holding", "resume of zone-a", id="resume"),
        pytest.param(
            ["promote", "zone-a"],
            "Promote",
            "progressing",
            "promotion of zone-a at step 1/3 (10%)",
            id="promote",
        ),
        pytest.param(
            ["promote", "zone-a", "--full"],
            "Promote",
            "completed",
            "full promotion of zone-a at step 1/3 (10%)",
            id="promote-full",
        ),
        pytest.param(
            ["abort", "zone-a"], "Abort", "aborted", "abort of zone-a at step 1/3 (10%)", id="abort"
        ),
        pytest.param(
            ["undo", "zone-a", "--to", "shapes-v0"],
            "Undo",
            "rolled_back",
            "undo of zone-a to shapes-v0",
            id="undo-to",
        ),
    ],
)
def test_intent_waits_until_applied_and_prints_one_line(
    cp: Harness, argv: list[str], rpc: str, phase: str, expected: str
) -> None:
    cp.fake.applied = _rollout(phase, revision=43, reason=APPLIED[phase])

    code, out, err = cp.run(*argv)

    assert (code, err) == (0, "")
    assert out.startswith(f"{expected} applied: zone-a: {phase}, step ")
    assert out.endswith(f" ({APPLIED[phase]}) [revision 43]\n")
    assert out.count("\n") == 1
    assert cp.fake.calls[0] == rpc
    assert cp.fake.calls[1:] == ["WatchRollout"]


def test_intent_not_applied_in_time_says_so(cp: Harness) -> None:
    started = time.monotonic()

    code, out, _ = cp.run("pause", "zone-a", "--wait", "0.3")

    assert code == 0
    assert time.monotonic() - started >= 0.3
    assert out == (
        "pause of zone-a recorded (revision 42); not applied within 0.3s: "
        "is a control plane leading? see `ctl status zone-a`\n"
    )


def test_intent_with_wait_0_only_records(cp: Harness) -> None:
    code, out, _ = cp.run("abort", "zone-a", "--wait", "0")

    assert (code, cp.fake.calls) == (0, ["Abort"])
    assert out == (
        "abort of zone-a at step 1/3 (10%) recorded (revision 42); "
        "the control plane applies it on its next tick\n"
    )


def test_first_model_rollout_says_every_node(cp: Harness) -> None:
    cp.fake.applied = _rollout("deploying", stable="shapes-v2", canary="", canary_nodes=[])

    code, out, _ = cp.run("rollout", "shapes-v2", "--group", "zone-a", "--canary", "100")

    assert code == 0
    assert out == (
        "first model of zone-a: shapes-v2 goes to every node at once, without analysis "
        "(revision 42)\n"
    )


@pytest.mark.parametrize(
    ("argv", "result", "detail", "expected"),
    [
        pytest.param(
            ["abort", "zone-a"],
            "superseded",
            "the rollout was rolled_back first: canary n1 failed to load shapes-v2",
            "abort of zone-a at step 1/3 (10%) superseded: the rollout was rolled_back first: "
            "canary n1 failed to load shapes-v2 [revision 43]\n",
            id="abort-superseded-by-rollback",
        ),
        pytest.param(
            ["pause", "zone-a"],
            "superseded",
            "by abort i-2",
            "pause of zone-a superseded: by abort i-2 [revision 43]\n",
            id="pause-superseded-by-abort",
        ),
        pytest.param(
            ["rollout", "shapes-v2", "--group", "zone-a", "--canary", "10"],
            "refused",
            "group zone-a has no live nodes to pick canaries from",
            "rollout of shapes-v2 to zone-a refused: group zone-a has no live nodes to pick "
            "canaries from [revision 43]\n",
            id="start-refused-at-the-tick",
        ),
    ],
)
def test_an_intent_that_did_not_apply_says_what_became_of_it(
    cp: Harness, argv: list[str], result: str, detail: str, expected: str
) -> None:
    cp.fake.applied = _rollout("rolled_back", revision=43)
    cp.fake.result, cp.fake.detail = result, detail

    code, out, _ = cp.run(*argv)

    assert (code, out) == (3, expected)
    assert "applied" not in out


def test_an_intent_waits_for_its_own_outcome_not_a_later_revision(cp: Harness) -> None:
    other = pb.IntentOutcome(id="i-0", result="applied", detail="someone else's pause")
    cp.fake.watch_script = [_rollout("paused", revision=43, intents=[other])]
    cp.fake.applied = _rollout("aborted", revision=44)

    code, out, _ = cp.run("abort", "zone-a")

    assert code == 0
    assert out.startswith("abort of zone-a at step 1/3 (10%) applied: zone-a: aborted")
    assert out.endswith("[revision 44]\n")


def test_an_outcome_already_in_the_reply_is_printed_without_waiting(cp: Harness) -> None:
    done = pb.IntentOutcome(id="i-1", result="applied", detail="start cancelled")
    cp.fake.rollout = _rollout(intents=[done])

    code, out, _ = cp.run("abort", "zone-a")

    assert code == 0
    assert cp.fake.calls == ["Abort"]
    assert "applied" in out


def test_adopt_waits_for_its_outcome(cp: Harness) -> None:
    cp.fake.applied = _rollout("adopted", canary="", canary_nodes=[], revision=43)

    code, out, _ = cp.run("adopt", "zone-a")

    assert code == 0
    assert out == "holding step 1 [revision 43]\n"  # the reason the adopt was applied with
    assert cp.fake.calls == ["Adopt", "WatchRollout"]


def test_promote_full_and_undo_to_reach_the_request(cp: Harness) -> None:
    cp.run("promote", "zone-a", "--full", "--wait", "0")
    cp.run("undo", "zone-a", "--to", "shapes-v0", "--wait", "0")

    promote, undo = cp.fake.requests
    assert isinstance(promote, pb.PromoteRequest)
    assert isinstance(undo, pb.UndoRequest)
    assert (promote.group, promote.full) == ("zone-a", True)
    assert (undo.group, undo.to_model) == ("zone-a", "shapes-v0")


ADOPTED = (
    "adopted group zone-a after lost state: stable shapes-v1 (sha256 abababababab…), served by "
    "most nodes (3 of 4 serving); stranded canaries back to shapes-v1: n1 (shapes-v2)"
)


def test_adopt_prints_what_was_adopted(cp: Harness) -> None:
    cp.fake.rollout = _rollout(
        "idle", pending=pb.PendingIntent(id="i-1", intent="adopt", model="shapes-v1")
    )
    cp.fake.applied = _rollout(
        "adopted", canary="", canary_nodes=[], steps=[], reason=ADOPTED, revision=43
    )

    code, out, err = cp.run("adopt", "zone-a", "--stable", "shapes-v1")

    assert (code, err) == (0, "")
    assert out == f"{ADOPTED} [revision 43]\n"
    request = cp.fake.requests[0]
    assert isinstance(request, pb.AdoptRequest)
    assert (request.group, request.stable) == ("zone-a", "shapes-v1")


def test_adopt_refused_says_why(cp: Harness) -> None:
    cp.fake.rollout = _rollout(
        "idle", pending=pb.PendingIntent(id="i-1", intent="adopt", model="shapes-v1")
    )
    cp.fake.applied = _rollout("idle", revision=43)
    cp.fake.result, cp.fake.detail = "refused", "nodes of group zone-a serve shapes-v2"

    code, out, _ = cp.run("adopt", "zone-a")

    assert (code, out) == (
        3,
        "adopt of zone-a (shapes-v1) refused: nodes of group zone-a serve shapes-v2 "
        "[revision 43]\n",
    )
    request = cp.fake.requests[0]
    assert isinstance(request, pb.AdoptRequest)
    assert request.stable == ""


def test_models_register_sends_absolute_path(cp: Harness, tmp_path: Path) -> None:
    model_file = tmp_path / "shapes-v2.pt"
    model_file.write_bytes(b"weights")

    code, out, err = cp.run(
        "models", "register", str(model_file), "--name", "shapes-v2", "--parent", "shapes-v1"
    )

    assert (code, err) == (0, "")
    assert out == f"registered model shapes-v2 from {model_file} (6.2 MB, sha256 abababababab)\n"
    request = cp.fake.requests[0]
    assert isinstance(request, pb.RegisterModelRequest)
    assert (request.path, request.name, request.parent) == (
        str(model_file),
        "shapes-v2",
        "shapes-v1",
    )


# --- reads ---------------------------------------------------------------------------------


def test_status_shows_state_and_latest_checks(cp: Harness) -> None:
    code, out, err = cp.run("status", "zone-a")

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "phase     progressing since 2023-11-14 22:13:20Z" in lines
    assert "step      1/3 (10%)" in lines
    assert "stable    shapes-v1" in lines
    assert "canary    shapes-v2 on n1" in lines
    assert "reason    holding step 1" in lines
    header = next(line for line in lines if line.startswith("CHECK"))
    assert header.split() == [
        "CHECK",
        "OUTCOME",
        "CANARY",
        "BASELINE",
        "THRESHOLD",
        "SAMPLES",
        "C/B",
        "REASON",
    ]
    assert lines[-1].split()[:6] == ["error_rate", "pass", "0.01", "0.02", "0.05", "120/980"]


LOST = "group zone-a: has 3 nodes serving shapes-v1 but no rollout document explains them"


def test_status_shows_why_a_group_is_lost(cp: Harness) -> None:
    cp.fake.rollout = _rollout("idle", lost=LOST)

    code, out, _ = cp.run("status", "zone-a")
    _, table, _ = cp.run("status")

    assert code == 0
    assert [line.split(None, 1) for line in out.splitlines() if line.startswith("LOST ")] == [
        ["LOST", LOST]
    ]
    assert "idle LOST" in table
    assert LOST in table


def test_status_shows_timing_and_the_failure_count(cp: Harness) -> None:
    thresholds = pb.Thresholds(
        report_deadline_s=120, analysis_deadline_s=300, consecutive_failures=2
    )
    cp.fake.rollout = _rollout(thresholds=thresholds, hold_s=60, failing_assessments=1)

    code, out, _ = cp.run("status", "zone-a")

    lines = out.splitlines()
    assert code == 0
    assert (
        "timing    hold 60s per step; canaries must serve within 120s; "
        "analysis pauses after 300s inconclusive"
    ) in lines
    assert "failures  1 failing assessment(s) in a row; rolls back at 2" in lines


def test_status_without_group_lists_every_group(cp: Harness) -> None:
    code, out, _ = cp.run("status")

    assert code == 0
    rows = [line.split()[:2] for line in out.splitlines()[1:]]
    assert rows == [["zone-a", "progressing"], ["zone-b", "progressing"]]
    assert cp.fake.calls == ["ListGroups", "GetRollout", "GetRollout"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["history", "zone-a"], "shapes-v1  shapes-v0  completed", id="history"),
        pytest.param(["nodes", "zone-a"], "zone-a  n1    serving  shapes-v2", id="nodes"),
        pytest.param(["models", "list"], "shapes-v2  detect  pt", id="models-list"),
        pytest.param(["models", "show", "shapes-v2"], "sha256      " + "ab" * 32, id="models-show"),
    ],
)
def test_read_prints_a_table(cp: Harness, argv: list[str], expected: str) -> None:
    code, out, err = cp.run(*argv)

    assert (code, err) == (0, "")
    assert expected in out


@pytest.mark.parametrize(
    ("argv", "key", "value"),
    [
        pytest.param(["status", "zone-a"], "phase", "progressing", id="status"),
        pytest.param(["history", "zone-a"], "outcome", "completed", id="history"),
        pytest.param(["nodes"], "node_id", "n1", id="nodes"),
        pytest.param(["models", "list"], "name", "shapes-v2", id="models-list"),
        pytest.param(["models", "show", "shapes-v2"], "input_size", 640, id="models-show"),
    ],
)
def test_output_json_parses(cp: Harness, argv: list[str], key: str, value: object) -> None:
    code, out, _ = cp.run(*argv, "--output", "json")

    assert code == 0
    parsed = json.loads(out)
    first = parsed[0] if isinstance(parsed, list) else parsed
    assert first[key] == value


def test_status_json_without_group_is_a_list(cp: Harness) -> None:
    _, out, _ = cp.run("status", "--output", "json")

    assert [r["group"] for r in json.loads(out)] == ["zone-a", "zone-b"]


def test_address_comes_from_the_environment(
    cp: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(common.ENV_ADDRESS, cp.address)

    code = ctl.main(["pause", "zone-a", "--wait", "0"])

    assert code == 0
    assert cp.fake.calls == ["Pause"]


# --- status --watch ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("final", "exit_code"),
    [
        pytest.param("completed", 0, id="completed"),
        pytest.param("idle", 0, id="idle"),
        pytest.param("rolled_back", 1, id="rolled-back"),
        pytest.param("aborted", 1, id="aborted"),
    ],
)
def test_watch_prints_each_change_once_and_exits_when_settled(
    cp: Harness, final: str, exit_code: int
) -> None:
    cp.fake.watch_script = [
        _rollout("deploying"),
        _rollout("deploying"),
        _rollout("holding"),
        _rollout("holding"),
        _rollout(final, reason=f"{final} now"),
    ]

    code, out, err = cp.run("status", "zone-a", "--watch", "--timeout", "5")

    assert (code, err) == (exit_code, "")
    phases = [line.split(",")[0] for line in out.splitlines()]
    assert phases == ["zone-a: deploying", "zone-a: holding", f"zone-a: {final}"]


def test_watch_times_out_with_exit_2(cp: Harness) -> None:
    cp.fake.watch_script = [_rollout("paused")]

    code, out, err = cp.run("status", "zone-a", "--watch", "--timeout", "0.3")

    assert code == 2
    assert out.startswith("zone-a: paused")
    assert err == "ctl: rollout in zone-a did not settle within 0.3s (last phase: paused)\n"


def test_watch_json_prints_one_object_per_line(cp: Harness) -> None:
    cp.fake.watch_script = [_rollout("holding"), _rollout("completed")]

    code, out, _ = cp.run("status", "zone-a", "--watch", "--output", "json")

    assert code == 0
    assert [json.loads(line)["phase"] for line in out.splitlines()] == ["holding", "completed"]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [
        pytest.param(grpc.StatusCode.INVALID_ARGUMENT, 2, id="invalid-argument"),
        pytest.param(grpc.StatusCode.NOT_FOUND, 3, id="not-found"),
        pytest.param(grpc.StatusCode.FAILED_PRECONDITION, 3, id="failed-precondition"),
        pytest.param(grpc.StatusCode.INTERNAL, 5, id="internal"),
    ],
)
def test_rpc_error_becomes_one_line_and_exit_code(
    cp: Harness, status: grpc.StatusCode, exit_code: int
) -> None:
    cp.fake.error = (status, "group zone-q is not\nknown")

    code, out, err = cp.run("promote", "zone-q")

    assert (code, out) == (exit_code, "")
    assert err == "ctl: group zone-q is not known\n"


def test_watch_rpc_error_maps_like_any_other(cp: Harness) -> None:
    cp.fake.error = (grpc.StatusCode.NOT_FOUND, "no group zone-q")

    code, _, err = cp.run("status", "zone-q", "--watch")

    assert (code, err) == (3, "ctl: no group zone-q\n")


def test_unreachable_control_plane_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"

    code = ctl.main(["--control-plane", address, "status", "zone-a"])

    out, err = capsys.readouterr()
    assert (code, out) == (4, "")
    assert err.startswith(f"ctl: control plane at {address} is unavailable: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--steps", "10,5,100"], "--steps: must be increasing", id="steps-decrease"),
        pytest.param(["--steps", "10,50"], "--steps: must be increasing", id="steps-not-100"),
        pytest.param(["--steps", "ten"], "--steps: must be increasing", id="steps-not-numbers"),
        pytest.param(["--canary", "0"], "--canary: must be a whole percentage", id="canary-0"),
        pytest.param(["--canary", "101"], "--canary: must be a whole percentage", id="canary-101"),
        pytest.param(
            ["--steps", "20,100"], "--canary 10 must equal the first", id="canary-vs-steps"
        ),
        pytest.param(["--hold", "-1"], "--hold: must be a duration like 30s", id="negative-hold"),
        pytest.param(["--hold", "5x"], "--hold: must be a duration like 30s", id="bad-hold-unit"),
        pytest.param(
            ["--max-p99-ratio", "nan"], "--max-p99-ratio: must be a finite", id="nan-bound"
        ),
        pytest.param(["--failures", "0"], "--failures: must be a whole number", id="zero-failures"),
        pytest.param(["--alpha", "0"], "--alpha: must be a number between 0 and 1", id="alpha-0"),
        pytest.param(["--alpha", "1"], "--alpha: must be a number between 0 and 1", id="alpha-1"),
        pytest.param(
            ["--max-class-mix-distance", "1.5"],
            "--max-class-mix-distance: must be a number from 0 to 1",
            id="class-mix-over-1",
        ),
        pytest.param(
            ["--min-samples", "2.5"], "--min-samples: must be a whole number", id="frac-samples"
        ),
    ],
)
def test_bad_rollout_input_is_refused_before_any_rpc(
    cp: Harness, argv: list[str], message: str
) -> None:
    code, out, err = cp.run("rollout", "shapes-v2", "--group", "zone-a", "--canary", "10", *argv)

    assert (code, out, cp.fake.calls) == (2, "", [])
    assert err.startswith("ctl: ")
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["models", "register", "/nonexistent/m.pt", "--name", "m"],
            "ctl: model file /nonexistent/m.pt does not exist\n",
            id="register-missing-file",
        ),
        pytest.param(
            ["status", "--watch"], "ctl: status --watch needs a GROUP\n", id="watch-no-group"
        ),
        pytest.param(
            ["frobnicate"],
            "ctl: argument COMMAND: invalid choice: 'frobnicate'",
            id="unknown-command",
        ),
    ],
)
def test_bad_input_is_refused_before_any_rpc(cp: Harness, argv: list[str], expected: str) -> None:
    code, out, err = cp.run(*argv)

    assert (code, out, cp.fake.calls) == (2, "", [])
    assert err.startswith(expected)
    assert err.count("\n") == 1


def test_missing_address_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(common.ENV_ADDRESS, raising=False)

    code = ctl.main(["status"])

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == (
        "ctl: no control plane address: pass --control-plane HOST:PORT or set "
        f"{common.ENV_ADDRESS}\n"
    )


def test_nodes_table_shows_what_a_loading_node_was_told_to_serve() -> None:
    loading = pb.NodeInfo(
        group="zone-a", node_id="n2", phase="loading", model="shapes-v1", desired="shapes-v2"
    )
    steady = pb.NodeInfo(
        group="zone-a", node_id="n3", phase="serving", model="shapes-v2", desired="shapes-v2"
    )

    rows = fmt.nodes_table([loading, steady]).splitlines()

    assert rows[1].split()[:4] == ["zone-a", "n2", "loading", "shapes-v2"]
    assert rows[1].split()[4] == "shapes-v1"
    assert rows[2].split()[:4] == ["zone-a", "n3", "serving", "shapes-v2"]


def test_status_shows_pins_the_pending_intent_and_the_last_outcome(cp: Harness) -> None:
    cp.fake.rollout = _rollout(
        stable_sha256="ab" * 32,
        canary_sha256="cd" * 32,
        pending=pb.PendingIntent(id="i-9", intent="promote"),
        intents=[pb.IntentOutcome(id="i-8", intent="pause", result="refused", detail="why")],
    )

    code, out, _ = cp.run("status", "zone-a")

    assert code == 0
    assert "pinned       shapes-v1 abababababab, shapes-v2 cdcdcdcdcdcd" in out
    assert "pending      promote (id i-9), waiting for the leader's tick" in out
    assert "last intent  pause (id i-8) refused: why" in out
