"""Data: the pipeline and the data sets the course trains and tests on.

- ``pipeline``: ``ImageData``, ``Batches`` and batch augmentation;
- ``digits``, ``photos``, ``synthetic``, ``cifar``: the data sets, each returning ``ImageData``
  (or image tensors, for photos).
"""
