"""Run by torchrun in tests: one rank of a training run, which then writes what its own model is.

    torchrun --standalone --nproc_per_node N tests/training/ddp_ranks.py RUN_DIR OUT_DIR [train options as JSON]

Each rank writes OUT_DIR/rank<R>.json: the digest of its model after the run (every parameter and
buffer), its epochs and the world it saw, so a test can compare the replicas with each other and
with the checkpoint rank 0 saved, from outside the trainer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from resnet_deploy.training import distributed
from resnet_deploy.training.trainer import Trainer, TrainOptions


def main(run_dir: str, out_dir: str, options: str = "{}") -> None:
    world, device = distributed.join("cpu")
    trainer = Trainer(TrainOptions.of(device=device, **json.loads(options)), run_dir, world=world)
    result = trainer.run()
    assert trainer.model is not None
    record = {
        "rank": world.rank,
        "size": world.size,
        "digest": distributed.model_digest(trainer.model),
        "epochs": [row.epoch for row in result.history],
    }
    Path(out_dir, f"rank{world.rank}.json").write_text(json.dumps(record))
    distributed.leave(world, finished=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
