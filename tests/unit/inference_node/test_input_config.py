"""Flags for what a request may ask of a node: image sizes, bytes in flight, calls, streams."""

from __future__ import annotations

import pytest

from inference_node.config_args import from_args
from inference_node.serving.admission import AdmissionLimits
from inference_node.serving.imaging import ImageLimits


def test_defaults_bound_decodes_and_derive_the_byte_limit_at_start() -> None:
    config = from_args([])

    assert config.images == ImageLimits()
    assert config.images.max_decoded_pixels == 4 * 640 * 640
    assert config.admission == AdmissionLimits()
    assert config.admission.max_inflight_bytes is None


def test_flags_set_the_limits() -> None:
    config = from_args(
        ["--max-pixels", "1000000", "--max-decoded-pixels", "250000",
         "--max-inflight-bytes", "1048576", "--max-concurrent-rpcs", "9", "--max-streams", "3",
         "--stream-window", "2", "--stream-idle-timeout", "1.5"]
    )  # fmt: skip

    assert config.images == ImageLimits(max_pixels=1_000_000, max_decoded_pixels=250_000)
    assert config.admission == AdmissionLimits(
        max_inflight_bytes=1 << 20, max_rpcs=9, max_streams=3, stream_window=2, stream_idle_s=1.5
    )


@pytest.mark.parametrize(
    "flag",
    [
        "--max-pixels",
        "--max-decoded-pixels",
        "--max-inflight-bytes",
        "--max-concurrent-rpcs",
        "--max-streams",
        "--stream-window",
        "--stream-idle-timeout",
    ],
)
def test_limits_below_one_are_refused_naming_the_flag(flag: str) -> None:
    with pytest.raises(ValueError, match=f"{flag} must be positive, got 0"):
        from_args([flag, "0"])
