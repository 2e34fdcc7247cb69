"""A naive baseline: a gRPC server that runs ultralytics ``predict`` one request at a time.

Started as ``python -m bench.naive_server MODEL PORT_FILE THREADS``; it writes its port to
PORT_FILE. THREADS is the torch thread count, set after a warm-up predict because ultralytics'
device setup on the first predict resets it.
"""

from __future__ import annotations

import io
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

from yolofleet.offline import ensure_offline

ensure_offline()

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from ultralytics import YOLO  # type: ignore[attr-defined]  # noqa: E402

from inference_node.telemetry.device import apply_threads  # noqa: E402
from yolofleet.v1 import inference_pb2 as pb  # noqa: E402
from yolofleet.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402


class NaiveServicer(pb_grpc.InferenceServicer):
    def __init__(self, model_path: str) -> None:
        self._model = YOLO(model_path)
        self._lock = threading.Lock()
        self._model.predict(np.zeros((160, 160, 3), dtype=np.uint8), verbose=False, imgsz=160)

    def Detect(self, request: pb.DetectRequest, context: Any) -> pb.DetectResponse:
        image = np.asarray(Image.open(io.BytesIO(request.image)).convert("RGB"))[:, :, ::-1]
        with self._lock:
            result: Any = self._model.predict(image, verbose=False, imgsz=160)[0]  # type: ignore[index]
        boxes = result.boxes
        return pb.DetectResponse(
            detections=[
                pb.Detection(
                    box=pb.Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3]), confidence=c, class_id=int(k)
                )
                for b, c, k in zip(
                    boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
                )
            ]
        )


def main() -> None:
    model_path, port_file, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    server = grpc.server(futures.ThreadPoolExecutor(16))
    pb_grpc.add_InferenceServicer_to_server(NaiveServicer(model_path), server)  # type: ignore[no-untyped-call]
    print(f"naive server threads={apply_threads(threads)}", file=sys.stderr)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_file.write_text(str(port))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
