"""``python -m seq2seq.train ...`` (also under torchrun): the same as ``seq2seq-train``."""

from seq2seq.cli.main import train

if __name__ == "__main__":
    train()
