"""The images' own stacks, replayed: one module per SageMaker image, each starting the image's real server
software from an environment with that image's Python and packages (`launch.replay.environments`).

- `ray_serve`: AWS's Ray Serve image (`deploy=default`): `ray start`, `serve run /opt/ml/model/config.yaml`,
  and the image's port-8080 adapter (`ray_adapter`, restated).
- `torchserve`: SageMaker's PyTorch inference image (`deploy=torchserve`, serverless): the toolkit's
  `serving.main()` and real TorchServe on Java 17, in an environment built on top of `training`'s.
- `training`: SageMaker's PyTorch training image's environment (`pytorch-amzn2023`).
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now, for a stack's own servers (a small race remains: two replays at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
