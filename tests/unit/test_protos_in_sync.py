"""The committed gRPC stubs must be exactly what protos/ generates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_protos(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}

    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, env=env
    )

    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert generated, "protoc generated nothing"
    for relative in generated:
        committed = ROOT / relative
        assert committed.exists(), f"{relative} is generated but not committed"
        assert committed.read_bytes() == (tmp_path / relative).read_bytes(), (
            f"{relative} drifted from protos/: run scripts/gen_protos.sh and commit the result"
        )
