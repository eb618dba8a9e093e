"""Text into token ids: reading parallel corpora, training and caching SentencePiece models, batching by
length, and the toy tasks the project generates itself."""
