"""The Detect path: everything a request passes through, start to answer.

``server`` (the gRPC servicer) with ``guard`` (status mapping) and ``frames`` (stream windows),
``imaging`` (decode and check an image), ``admission`` and ``batcher`` (queueing, batch
cutting), ``routing`` (which model serves a request) with ``model_cache`` + ``catalog`` (models
loaded on demand), ``ledger`` (per-model outcome accounting), ``detector`` (the torch model
behind the ``Detector`` seam: letterbox, network, NMS), and the views served over gRPC:
``status`` (GetStatus) and ``health``.
"""
