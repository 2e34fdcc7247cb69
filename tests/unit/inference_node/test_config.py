from __future__ import annotations

import pytest

from inference_node.config import NodeConfig
from inference_node.config_args import from_args


@pytest.fixture(autouse=True)
def _no_threads_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOLOFLEET_THREADS", raising=False)


def test_threads_default_leaves_torch_default() -> None:
    assert from_args([]).threads is None


def test_threads_flag_sets_the_count() -> None:
    assert from_args(["--threads", "4"]).threads == 4


def test_threads_env_is_the_default_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLOFLEET_THREADS", "3")

    assert from_args([]).threads == 3
    assert from_args(["--threads", "1"]).threads == 1


@pytest.mark.parametrize("value", ["0", "-2"])
def test_threads_below_one_is_refused_with_a_sentence(value: str) -> None:
    with pytest.raises(ValueError, match=rf"--threads must be at least 1, got {value} "):
        from_args(["--threads", value])


def test_threads_below_one_is_refused_by_check() -> None:
    with pytest.raises(ValueError, match="--threads must be at least 1, got 0"):
        NodeConfig(threads=0).check()


def test_threads_not_a_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        from_args(["--threads", "many"])

    assert exit_info.value.code == 2
    assert "--threads: invalid int value: 'many'" in capsys.readouterr().err
