"""KServe's own ``ModelServer`` serving a mapguard checkpoint (``benchmarks.remote_throughput``).

Run with a Python that has ``kserve`` installed (it cannot share the project's environment:
kserve 0.21 pins protobuf 6 and psutil 5, the ONNX stack has protobuf 7), e.g. a side venv made
with ``python -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve``; the
project's site-packages (torch, mapguard) are appended to ``sys.path`` after kserve's own:

``/tmp/kserve-venv/bin/python benchmarks/remote_kserve_server.py MODEL.pt PORT SITE_PACKAGES``

It serves ``/v2/models/suspect/infer`` (Open Inference Protocol, REST only) on 127.0.0.1:PORT,
answering the model's logits as one FP32 output, one uvicorn worker, one torch thread.
"""

from __future__ import annotations

import sys


def main() -> None:
    model_path, port, site = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.argv = sys.argv[:1]  # kserve parses the command line at import
    import site as site_module

    site_module.addsitedir(site)  # after kserve's own packages; runs the editable install's .pth
    import numpy as np
    import torch
    from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

    from mapguard.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    net, _ = load_checkpoint(model_path)
    net.eval()

    class Suspect(Model):
        def __init__(self) -> None:
            super().__init__("suspect")
            self.ready = True

        async def predict(self, payload: InferRequest, headers=None, response_headers=None):
            x = payload.inputs[0].as_numpy().astype(np.float32)
            with torch.inference_mode():
                logits = net(torch.from_numpy(x)).float().numpy()
            out = InferOutput(name="output-0", shape=list(logits.shape), datatype="FP32",
                              data=logits)  # fmt: skip
            return InferResponse(response_id=payload.id or "0", model_name=self.name,
                                 infer_outputs=[out])  # fmt: skip

    ModelServer(http_port=port, enable_grpc=False, workers=1).start([Suspect()])


if __name__ == "__main__":
    main()
