"""Analysis: what the chapters measure, count and plot.

- ``attention``: attention rollout, input-gradient maps, signal propagation through depth;
- ``cost``: multiply-accumulates and attention memory in closed form; ``memory``: memory
  measured on a running model (the package's memory meters); ``patch_snr``: the smallest object
  a patch size can see; ``shapes``: the input and output shape of every layer, measured in one
  forward pass (forward hooks);
- ``metrics``: scores beyond accuracy (mean IoU); ``figures``: the chapters' plots.
"""
