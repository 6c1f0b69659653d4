"""Architectures and their packed form (K independent models evaluated as one module).

Contract for every net built by :func:`build_net`:

* input: float images in [0, 1], shape (B, C, H, W); normalisation is the net's first layer;
* ``net(x)`` -> logits (B, num_classes);
* ``net.embed(x)`` -> penultimate representation (B, D); ``net.head(h)`` -> logits, with
  ``net(x) == net.head(net.embed(x))``.
"""

from memadv.nets.registry import NETS, build_net

__all__ = ["NETS", "build_net"]
