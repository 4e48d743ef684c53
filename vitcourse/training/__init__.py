"""Training: the loop and everything it is made of.

- ``loop``: ``fit`` and ``evaluate``;
- ``losses``: what ``fit`` minimises (``Objective``), DeiT's distillation loss, CLIP's
  contrastive loss;
- ``optim``: parameter groups for weight decay, the warm-up + cosine schedule;
- ``checkpoints``: save, load and resume a run;
- ``runtime``: the device, bf16 autocast, CPU threads, DistributedDataParallel;
- ``recipes``: the course's training settings (``DIGITS_RECIPE``, ``CNN_RECIPE``).
"""
