"""Soft-sharing architectures, each a builder (encoder, num_tasks, input_shape,
**options) -> models.Model over an explicit parameter pytree, registered by name in
mtl_jax.models.MODELS (docs/architectures.md):

  mmoe.py          Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)
  cgc.py           Customized Gate Control and Progressive Layered Extraction (Tang et al., RecSys 2020)
  cross_stitch.py  Cross-stitch networks (Misra et al., CVPR 2016)
  mtan.py          Multi-Task Attention Network (Liu et al., CVPR 2019)
  dselect_k.py     DSelect-k gates (Hazimeh et al., NeurIPS 2021)
  experts.py       what they share: the encoder's blocks as pure functions, stacks of
                   them run with jax.vmap, gates, per-task heads
"""
# The registry (mtl_jax.models) imports these modules at its end, and they import its
# encoder building blocks. Importing the registry first, whichever of these modules is
# asked for first, keeps that order: models is then complete up to its registry when
# the modules ask it for EncoderSpec, Model and the pixel scaling.
import mtl_jax.models  # noqa: F401  (see above)
