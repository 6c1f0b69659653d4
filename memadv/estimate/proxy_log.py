"""Free proxies of memorization, logged by every subset model during its training.

Nothing here runs an extra forward pass: the training step already computes, for each model and
each example of its minibatch, the cross-entropy and the logits; :class:`ProxyLog` keeps per
(model, training example), on the training device:

* ``cum_loss``: the sum over epochs of the example's training loss — the "cumulative sample loss"
  of Ravikumar et al. (ICML 2025). The training pass sees the *augmented* image where the recipe
  augments (random crop + flip, CIFAR/Tiny ImageNet), so this is the loss of that epoch's view;
* ``correct_epochs``: in how many epochs the training pass classified it correctly (the binary
  "learning speed" / cumulative training accuracy of Jiang et al., ICML 2021, Sec. 5);
* ``forgetting``: forgetting events (Toneva et al., ICLR 2019, Sec. 3): epochs e >= 1 in which the
  example was classified correctly by epoch e - 1's training pass and incorrectly by epoch e's
  (each example is presented once per epoch, so "between consecutive presentations");
* ``first_learned``: the first epoch (0-based) from which every later training pass classifies
  it correctly, i.e. 1 + the last epoch it was wrong; ``epochs`` when it is wrong in the last epoch
  (not learned). This is the "learned for good" epoch of the learning-speed family (Jiang et al.
  2021; Toneva et al.'s "learned" event), not the first correct epoch, which one lucky batch sets.

For the examples a model did *not* train on, the held-out loss at the last epoch comes from the
correctness pass the estimator runs anyway after training (:func:`memadv.estimate.train.predict`).

Shard storage (:func:`proxy_columns`, :func:`read_proxy_rows`): one bytes cell per model and
quantity, only the examples that matter (in-subset ones in index order for the training-pass
quantities, out-of-subset ones for the held-out loss): float16 losses (relative rounding 2^-11,
far below the between-model spread) and int16 counts/epochs. At CIFAR-100 scale (50,000 examples,
35,000 in a subset) that is 35,000 x 8 + 15,000 x 2 bytes = 310 kB a model before parquet's
compression, against 14 kB of bit-packed correctness: 1.2 GB of shards for 4,000 models. On the
device the log holds 12 bytes per (model, example): 4.8 MB for a CIFAR-100 shard of 8 models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# Shard columns of the proxies (bytes per model; ``read_proxy_rows`` decodes them).
IN_SUBSET = {"cum_loss": np.float16, "correct_epochs": np.int16, "forgetting": np.int16, "first_learned": np.int16}
HELD_OUT = {"heldout_loss": np.float16}
PROXY_COLUMNS = [*IN_SUBSET, *HELD_OUT]


class ProxyLog:
    """Per-(model, training example) proxies of K models on n_train examples, on ``device``.

    Call :meth:`record` with every minibatch's detached per-example loss and correctness, and
    :meth:`end_epoch` after each epoch (of the models ``rows``: all for packed training, one for
    one-by-one). Values of examples outside a model's subset are meaningless (never stored).
    """

    def __init__(self, k: int, n_train: int, device: torch.device):
        z = dict(device=device)
        self.cum_loss = torch.zeros(k, n_train, dtype=torch.float32, **z)
        self.correct_epochs = torch.zeros(k, n_train, dtype=torch.int16, **z)
        self.forgetting = torch.zeros(k, n_train, dtype=torch.int16, **z)
        self.last_wrong = torch.full((k, n_train), -1, dtype=torch.int16, **z)
        self.prev = torch.zeros(k, n_train, dtype=torch.bool, **z)   # correct in the previous epoch
        self.now = torch.zeros(k, n_train, dtype=torch.bool, **z)    # correct in this epoch (so far)

    _STATE = ("cum_loss", "correct_epochs", "forgetting", "last_wrong", "prev", "now")

    @torch.no_grad()
    def record(self, rows: slice, ids: torch.Tensor, loss: torch.Tensor, correct: torch.Tensor) -> None:
        """ids, loss, correct: (k', B) example ids, per-example training loss and correctness of
        models ``rows`` in one minibatch (each in-subset example comes once per epoch)."""
        self.cum_loss[rows].scatter_add_(1, ids, loss.detach().float())
        self.now[rows].scatter_(1, ids, correct)

    @torch.no_grad()
    def end_epoch(self, epoch: int, rows: slice) -> None:
        now, prev = self.now[rows], self.prev[rows]
        if epoch > 0:  # before its first presentation an example is not "learned" (Toneva et al.)
            self.forgetting[rows] += (prev & ~now).to(torch.int16)
        self.correct_epochs[rows] += now.to(torch.int16)
        self.last_wrong[rows].masked_fill_(~now, epoch)
        prev.copy_(now)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """For the shard checkpoint: a resumed shard logs what an uninterrupted one would."""
        return {name: getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in self._STATE:
            getattr(self, name).copy_(state[name])

    def arrays(self) -> dict[str, np.ndarray]:
        """The four training-pass proxies, (K, n_train) each, on the CPU (see the module docstring)."""
        return {"cum_loss": self.cum_loss.cpu().numpy(), "correct_epochs": self.correct_epochs.cpu().numpy(),
                "forgetting": self.forgetting.cpu().numpy(), "first_learned": (self.last_wrong + 1).cpu().numpy()}


def proxy_columns(arrays: dict[str, np.ndarray], heldout_loss: np.ndarray, masks: np.ndarray) -> dict[str, list[bytes]]:
    """Shard columns: per model, the in-subset values of each training-pass proxy and the
    out-of-subset values of the held-out loss, as float16/int16 bytes (:data:`IN_SUBSET`, :data:`HELD_OUT`).

    arrays: name -> (K, n_train); heldout_loss: (K, n_train) loss of the trained models on every
    training example; masks: (K, n_train) bool subsets."""
    cols = {name: [row[m].astype(dt).tobytes() for row, m in zip(arrays[name], masks)] for name, dt in IN_SUBSET.items()}
    cols["heldout_loss"] = [row[~m].astype(np.float16).tobytes() for row, m in zip(heldout_loss, masks)]
    return cols


def read_proxy_rows(cells: dict[str, Any], masks: np.ndarray, where: str) -> dict[str, np.ndarray]:
    """Decode :func:`proxy_columns` back to (K, n_train) float64 arrays, NaN where a value does not
    exist (training-pass proxies outside the subset, held-out loss inside it). ``cells``: column ->
    sequence of K bytes cells; ``where`` names the file in errors (SchemaError on a wrong length)."""
    from memadv.errors import SchemaError

    out = {}
    for name, dt in {**IN_SUBSET, **HELD_OUT}.items():
        inside = name in IN_SUBSET
        dense = np.full(masks.shape, np.nan)
        for j, (cell, m) in enumerate(zip(cells[name], masks)):
            vals = np.frombuffer(cell, dtype=dt)
            sel = m if inside else ~m
            if vals.size != int(sel.sum()):
                raise SchemaError(f"{where}: column {name} of model row {j} holds {vals.size} values, expected "
                                  f"{int(sel.sum())}; the shard is damaged")
            dense[j, sel] = vals
        out[name] = dense
    return out
