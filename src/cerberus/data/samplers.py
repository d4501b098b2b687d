"""The P x K identity sampler (method §4.2): each batch holds P identities, K images each."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cerberus.errors import CerberusError


class PKBatchSampler:
    """Yields batches of ``(image index, augmentation seed)`` for a range of iterations.

    A batch is a pure function of ``(seed, iteration)``: identities are drawn epoch by epoch
    (a random permutation of all identities, cut into groups of P; the last short group is
    dropped), and K images per identity are drawn without replacement when it has at least K,
    with replacement otherwise. Resuming at iteration ``i`` therefore replays exactly the batches
    an uninterrupted run would have seen; the sampler's whole state is the iteration number.

    With ``world_size > 1`` (DistributedDataParallel) each rank gets ``P / world_size``
    identities of the same global batch, so every rank sees complete positive groups.

    Args:
        labels: training class of every image, shape ``(N,)``.
        p: identities per batch. k: images per identity.
        seed: base seed. start: first iteration. stop: iteration to stop before.
        rank, world_size: this process's share of each batch.
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        p: int,
        k: int,
        seed: int,
        start: int = 0,
        stop: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        if p < 2 or k < 2:
            raise CerberusError(f"P x K sampler: need P >= 2 and K >= 2, got P={p}, K={k}")
        if len(classes) < p:
            raise CerberusError(
                f"P x K sampler: P={p} identities per batch but only {len(classes)} in the data"
            )
        if p % world_size:
            raise CerberusError(f"P x K sampler: P={p} is not divisible by world size {world_size}")
        self.p, self.k, self.seed = p, k, seed
        self.start, self.stop = start, stop
        self.rank, self.world_size = rank, world_size
        self.classes = classes
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], classes)
        self.members = np.split(order, bounds[1:])
        self.batches_per_epoch = len(classes) // p

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def _epoch_identities(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 0])
        return rng.permutation(len(self.classes))

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        """The ``(index, augmentation seed)`` pairs of this rank's part of one batch."""
        epoch, pos = divmod(iteration, self.batches_per_epoch)
        ids = self._epoch_identities(epoch)[pos * self.p : (pos + 1) * self.p]
        rng = np.random.default_rng([self.seed, iteration, 1])
        aug_seeds = rng.integers(0, 2**31 - 1, size=(self.p, self.k))
        out = []
        for j, c in enumerate(ids):
            pool = self.members[c]
            pick = rng.choice(pool, size=self.k, replace=len(pool) < self.k)
            out += [(int(i), int(s)) for i, s in zip(pick, aug_seeds[j])]
        # The union of the ranks' shares is the single-process batch.
        share = len(out) // self.world_size
        return out[self.rank * share : (self.rank + 1) * share]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for it in range(self.start, self.stop):
            yield self.batch(it)
