"""Text for models: vocabularies, padded id arrays, and generating text.

* :class:`TextVectorizer` learns a vocabulary from texts by frequency
  (streaming, in memory bounded by the vocabulary) and turns texts into
  padded ``int64`` arrays of token ids for an ``Embedding`` layer, with 0
  for padding and 1 for unknown tokens; ``decode`` turns ids back into text.
  It splits on whitespace, into characters, with a function, or into
  subwords with a Hugging Face ``tokenizers.Tokenizer``
  (:meth:`TextVectorizer.from_tokenizer`, ``pip install 'cdl[text]'``),
  and is saved as JSON, never as a pickle.
* :func:`pad_sequences` pads and cuts lists of ids to one length, as Keras'
  does but at the end by default.
* :func:`generate` extends prompts with a causal language model's
  predictions: greedy, with a temperature, or among the ``top_k`` most
  likely tokens, seeded.

The modules: :mod:`cdl.text.vectorizer`, :mod:`cdl.text.storage` (the
vectorizer's config and file), :mod:`cdl.text.subword` (wrapping a
tokenizer), :mod:`cdl.text.sequences` and :mod:`cdl.text.sampling`.

Examples
--------
>>> from cdl import text
>>> vectorizer = text.TextVectorizer(split="character").adapt(["hello world"])
>>> ids = vectorizer(["hello", "low"])
>>> ids
array([[6, 7, 2, 2, 3],
       [2, 3, 4, 0, 0]])
>>> vectorizer.decode(ids)
['hello', 'low']
"""
from cdl.text.sampling import generate
from cdl.text.sequences import pad_sequences
from cdl.text.vectorizer import TextVectorizer

__all__ = ["TextVectorizer", "pad_sequences", "generate"]
