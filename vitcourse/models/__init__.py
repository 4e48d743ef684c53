"""Models: the ViT, its parts and relatives, and the registry of named configurations.

- ``patches``: images to patches and back; ``attention``: the attention formula and the
  multi-head layer; ``vit``: ``PatchEmbed``, ``Mlp``, ``Block``, ``VisionTransformer``;
  ``posembed``: fixed and resampled position embeddings;
- ``deit``: the distilled ViT; ``convnet``: the CNN baseline and teacher; ``naive``: the
  textbook ViT the benchmark compares with; ``heads``, ``masking``: what chapter 2 builds on the
  tokens;
- ``registry``: every named configuration (``create_model``); ``pretrained``: timm, Hugging
  Face and JAX checkpoints; ``statedict``: how two state dicts differ.
"""
