"""Every epoch's batches, reproducible from (seed, epoch), and this process's share of them under torchrun."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from seq2seq.data.corpus import Batch, Example, collate, make_batches
from seq2seq.training import distributed


class BatchPlan:
    """Every epoch's batches, reproducible from (seed, epoch): resuming mid-epoch rebuilds the same plan, and
    every torchrun process builds the same one.

    ``resegment(epoch_seed)``, when given, returns the epoch's examples (a sampled segmentation, a function of
    the seed and the lines alone: seq2seq/data/sampling.py); the positions in a batch then refer to those.
    """

    def __init__(self, examples: Sequence[Example], batch_tokens: int, batch_sentences: int | None, seed: int,
                 resegment: Callable[[int], list[Example]] | None = None) -> None:
        self.examples, self.seed, self.resegment = examples, seed, resegment
        self.batch_tokens, self.batch_sentences = batch_tokens, batch_sentences

    def epoch(self, epoch: int) -> list[list[int]]:
        epoch_seed = self.seed * 1000 + epoch
        if self.resegment is not None:
            self.examples = self.resegment(epoch_seed)
        generator = torch.Generator().manual_seed(epoch_seed)
        batches = make_batches(self.examples, self.batch_tokens, self.batch_sentences, generator)
        world = distributed.world_size()
        if world > 1:
            batches = distributed.whole_rounds(batches, world)
            distributed.check_same(f"epoch {epoch} batches", [[self.examples[i].index for i in b] for b in batches])
        return batches

    def batch(self, positions: Sequence[int]) -> Batch:
        return collate([self.examples[i] for i in positions])

    def steps(self, batches: list[list[int]], done: int, accumulate: int) -> list[list[list[int]]]:
        """What is left of an epoch (``batches``: all of it; ``done`` of them trained on) for this process:
        groups of ``accumulate`` batches, one per optimizer step.

        Under torchrun every process builds the epoch's batches as one process would, cut into whole rounds of
        one batch per process (every pair kept), and takes its shard (global batch i to rank i % world): step
        k of the epoch trains on global batches k*A*W .. (k+1)*A*W - 1, so ``done`` (global) / world is this
        rank's position in its shard. The last step of an epoch may have fewer than A batches.
        """
        world = distributed.world_size()
        mine = distributed.shard(batches, distributed.rank(), world)[done // world:]
        return [mine[i:i + accumulate] for i in range(0, len(mine), accumulate)]
