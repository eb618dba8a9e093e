"""The network: special token ids, the encoder, the attention forms, the decoders of their papers, the
encoder-decoder that joins them, and the loss. Plain torch modules over token ids: nothing here reads a file,
knows a tokenizer or a command."""
