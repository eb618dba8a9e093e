"""seq2seq: RNN encoder-decoder translation with Bahdanau, Luong, scaled dot-product and multi-head attention.

Shape legend used in every docstring and comment:
B batch, S source length, T target length, K beam, H hidden, E embedding, V vocabulary, L layers.
"""

__version__ = "0.1.0"

__all__ = ["Translator", "__version__"]


def __getattr__(name: str):  # lazy: `import seq2seq` stays cheap (no torch) until Translator is used
    if name == "Translator":
        from seq2seq.inference.translator import Translator

        return Translator
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
