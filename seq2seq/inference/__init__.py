"""A trained model at work: beam and greedy search, batched decoding, the :class:`Translator`, ensembles,
int8 weights, force-decoded scores and BLEU."""
