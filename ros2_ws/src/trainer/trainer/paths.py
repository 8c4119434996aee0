"""Where the shipped checkpoints live: thin re-exports of :func:`residual_core.checkpoint.checkpoint_root` and its
two helpers (``$RESIDUAL_VLA_CHECKPOINTS``, else the repository's ``checkpoints/``; never the current directory),
kept so the trainer's CLIs read ``trainer.paths`` as before."""

from residual_core.checkpoint import checkpoint_root, default_base_checkpoint, default_residual_checkpoint

__all__ = ["checkpoint_root", "default_base_checkpoint", "default_residual_checkpoint"]
