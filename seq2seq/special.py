"""The special token ids, fixed in every SentencePiece model seq2seq trains.

This module imports nothing, so the network (encoder, decoder, search, loss) needs no tokenizer.
"""

PAD, UNK, BOS, EOS = 0, 1, 2, 3
