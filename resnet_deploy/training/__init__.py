"""Train a ResNet, or fine-tune one, into the checkpoint the rest of the toolkit exports and deploys.

The paper's recipes (``recipes``), the deterministic loop that resumes bit for bit (``trainer``),
the run directory with its lock and resumable state (``run_state``), the per-epoch log (``log``) and
the top-k evaluation (``metrics``). What a run saves is typed in ``resnet_deploy.artifacts.train_state``.
"""
