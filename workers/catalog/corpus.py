"""The built-in character-level corpus: the Python documentation shipped with CPython.

``pydoc_data.topics`` is the text of the language reference and library topics that
``help()`` shows (about 465k characters: English technical prose with code examples).
It ships with every CPython, so the language-modelling task needs no download, and it
is a fair small LM task in the spirit of enwik8/text8: spelling, punctuation, indented
code and cross references all have to be learnt, and the held-out tail is different
topics from the training head.

Torch- and numpy-free: the catalogue reads the vocabulary size and the corpus length
from here, and the worker encodes the same text with the same vocabulary.
"""

from __future__ import annotations

import functools

# A fixed alphabet: newline and printable ASCII, plus one id (0) for anything else
# (the corpus has a few hundred typographic quotes and dashes). Fixed, so that the
# vocabulary, and therefore bits per character, do not change with the Python version.
OTHER = 0
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(ALPHABET) + 1
_TABLE = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


@functools.cache
def corpus_text() -> str:
    """The documentation topics in a stable (sorted) order, tabs expanded."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics)).expandtabs(8)


def encode(text: str) -> list[int]:
    """Character ids in ``[0, VOCAB_SIZE)``; characters outside the alphabet give ``OTHER``."""
    return [_TABLE.get(ch, OTHER) for ch in text]


def corpus_length() -> int:
    return len(corpus_text())


__all__ = ["ALPHABET", "OTHER", "VOCAB_SIZE", "corpus_length", "corpus_text", "encode"]
