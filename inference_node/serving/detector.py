"""``TorchDetector``: a YOLO detection network with our own letterbox and NMS around it.

Ultralytics' ``predict()`` keeps per-call state in its predictor and is not thread-safe. The
node never calls it: it runs the network's ``nn.Module`` directly, letterboxes every image of
a batch to the model's square input size, and runs class-aware NMS per image with that
request's own thresholds, so one batch can carry requests with different settings.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision

from inference_node.model import Detection, DetectParams, Image, ModelSpec

LETTERBOX_FILL = 114
MAX_NMS_CANDIDATES = 30_000


@dataclass(frozen=True, slots=True)
class _Placement:
    """How one original image was scaled and padded into the model input."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int


class TorchDetector:
    """Runs a loaded detection ``nn.Module`` on batches of RGB images."""

    def __init__(self, module: torch.nn.Module, *, spec: ModelSpec, device: str) -> None:
        self._module = module
        self._spec = spec
        self._device = device
        self._half = device.startswith("cuda")
        self._channels_last = channels_last_preferred(device)
        if self._channels_last:
            self._module = module.to(memory_format=torch.channels_last)

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def device(self) -> str:
        return self._device

    def detect(
        self, images: Sequence[Image], params: Sequence[DetectParams]
    ) -> list[list[Detection]]:
        if len(images) != len(params):
            raise ValueError(f"{len(images)} images but {len(params)} parameter sets")
        batch, placements = self._preprocess(images)
        with torch.inference_mode():
            raw = self._module(batch)
        predictions = raw[0] if isinstance(raw, tuple | list) else raw
        return [
            self._postprocess(predictions[i], placements[i], params[i]) for i in range(len(images))
        ]

    def weight_bytes(self) -> int:
        """Bytes held by the network's parameters and buffers on its device."""
        tensors = [*self._module.parameters(), *self._module.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def close(self) -> None:
        """Drop the module's tensors; the caller releases the device cache afterwards."""
        self._module.to("cpu")
        del self._module

    def _preprocess(self, images: Sequence[Image]) -> tuple[torch.Tensor, list[_Placement]]:
        size = self._spec.input_size
        canvas = np.full((len(images), size, size, 3), LETTERBOX_FILL, dtype=np.uint8)
        placements = []
        for index, image in enumerate(images):
            height, width = image.shape[:2]
            scale = min(size / height, size / width)
            new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
            pad_x, pad_y = (size - new_w) / 2, (size - new_h) / 2
            left, top = round(pad_x - 0.1), round(pad_y - 0.1)
            resized: np.ndarray = image
            if (new_w, new_h) != (width, height):
                resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            canvas[index, top : top + new_h, left : left + new_w] = resized
            placements.append(_Placement(scale, left, top, width, height))
        tensor = torch.from_numpy(canvas).to(self._device, non_blocking=True)
        tensor = tensor.permute(0, 3, 1, 2)  # NHWC memory: already channels-last, no copy
        if not self._channels_last:
            tensor = tensor.contiguous()
        tensor = tensor.half() if self._half else tensor.float()
        return tensor / 255.0, placements

    def _postprocess(
        self, prediction: torch.Tensor, placement: _Placement, params: DetectParams
    ) -> list[Detection]:
        candidates = prediction.transpose(0, 1)  # (anchors, 4 + classes)
        scores, class_ids = candidates[:, 4:].max(dim=1)
        keep = scores > params.conf
        if params.classes:
            wanted = torch.tensor(sorted(params.classes), device=class_ids.device)
            keep &= torch.isin(class_ids, wanted)
        boxes, scores, class_ids = (
            _xywh_to_xyxy(candidates[keep, :4]),
            scores[keep],
            class_ids[keep],
        )
        if scores.numel() > MAX_NMS_CANDIDATES:
            top = scores.topk(MAX_NMS_CANDIDATES).indices
            boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
        kept = torchvision.ops.batched_nms(boxes.float(), scores.float(), class_ids, params.iou)
        kept = kept[: params.max_det]
        return self._to_detections(boxes[kept], scores[kept], class_ids[kept], placement)

    def _to_detections(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        class_ids: torch.Tensor,
        placement: _Placement,
    ) -> list[Detection]:
        pad = torch.tensor(
            [placement.pad_x, placement.pad_y, placement.pad_x, placement.pad_y],
            device=boxes.device,
        )
        original = (boxes.float() - pad) / placement.scale
        original[:, 0::2] = original[:, 0::2].clamp(0, placement.width)
        original[:, 1::2] = original[:, 1::2].clamp(0, placement.height)
        names = self._spec.class_names
        return [
            Detection(
                x1=box[0],
                y1=box[1],
                x2=box[2],
                y2=box[3],
                confidence=score,
                class_id=class_id,
                class_name=names[class_id] if class_id < len(names) else str(class_id),
            )
            for box, score, class_id in zip(
                original.cpu().tolist(),
                scores.float().cpu().tolist(),
                class_ids.cpu().tolist(),
                strict=True,
            )
        ]


def channels_last_preferred(device: str) -> bool:
    """Channels-last convolutions are faster on CUDA and on x86 CPUs with oneDNN (mkldnn)."""
    if device.startswith("cuda"):
        return True
    return (
        platform.machine() in {"x86_64", "AMD64"}
        and torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        and bool(torch.backends.mkldnn.enabled)
    )


def _xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    half = boxes[:, 2:4] / 2
    return torch.cat([boxes[:, :2] - half, boxes[:, :2] + half], dim=1)
