"""Dropout whose CPU mask is cheap to draw."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` (same argument, same distribution) with its CPU mask drawn by ``rand``.

    Why: on CPU, torch's dropout draws its mask with ``bernoulli_``, about twice as slow as uniform
    numbers compared with ``p`` (1.35 against 0.75 ms for the ``(2625, 64)`` input of the u1 encoder
    on 2 cores: 8% of a ``gcn_dot`` step). Each element is kept with probability ``1 - p`` and
    scaled by ``1 / (1 - p)`` as before; only the random numbers behind the mask differ. On other
    devices (CUDA's dropout is one fused kernel) and in evaluation it is ``nn.Dropout`` itself.

    Args:
        p: Probability of zeroing an element, in ``[0, 1]``.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Args:
            x: Any shape, floating point.

        Returns:
            ``x`` with each element zeroed with probability ``p`` and the rest divided by ``1 - p``
            (in training; ``x`` itself in evaluation).
        """
        if not self.training or self.p == 0.0 or self.p == 1.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))
