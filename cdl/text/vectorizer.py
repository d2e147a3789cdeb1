"""TextVectorizer: texts to padded arrays of token ids, and back."""

import heapq
import string
from collections import Counter

import numpy as np

from cdl._validation import BLAS_INT_MAX, check_bool, check_number
from cdl.data.preprocessing import NotFittedError
from cdl.text import storage, subword

__all__ = ["TextVectorizer"]

#: ASCII punctuation, which "strip_punctuation" removes (Keras' set).
_PUNCTUATION = str.maketrans("", "", string.punctuation)


class TextVectorizer:
    """Turn texts into arrays of token ids with a vocabulary learned by frequency.

    As Keras' ``TextVectorization`` with ``output_mode="int"``: each text is
    standardized (lowercased by default), split into tokens and each token
    replaced by its index in the vocabulary. Index 0 is the padding token,
    index 1 the out-of-vocabulary (OOV) token, which every token not in the
    vocabulary becomes; the learned tokens follow, most frequent first.

    Parameters
    ----------
    max_tokens : int >= 2, optional
        The largest vocabulary, padding and OOV tokens included: ``adapt``
        keeps the ``max_tokens - 2`` most frequent tokens. None keeps all.
    output_sequence_length : int >= 1, optional
        Every output row has this length: longer texts are cut at the end,
        shorter ones padded at the end with 0. None pads each batch to its
        longest text (as Keras does).
    split : {"whitespace", "character"} or callable
        "whitespace" splits on runs of whitespace (``str.split()``),
        "character" makes every character (Unicode code point) a token, and
        a callable takes one standardized text and returns its list of
        tokens (strings). To split into subwords with a Hugging Face
        tokenizer, use ``TextVectorizer.from_tokenizer``.
    lowercase : bool
        Lowercase texts (``str.lower``) before anything else.
    oov_token : str
        The token at index 1, which unknown tokens become.
    pad_token : str
        The token at index 0 (the padding, which ``decode`` leaves out).
    standardize : {None, "strip_punctuation"} or callable
        After lowercasing: "strip_punctuation" removes ASCII punctuation
        (``string.punctuation``, the characters Keras removes); a callable
        takes a text and returns the text to split.

    Notes
    -----
    ``adapt`` reads its texts once, one at a time, and keeps only a count
    per distinct token: its memory grows with the vocabulary, not with the
    amount of text, so a generator over a large file can be adapted on.
    Tokens of equal count are ordered as Keras orders them, by the token
    strings in reverse code-point order: the vocabulary depends only on the
    counts, never on the order of the texts.

    A config (``get_config``) and a saved file (``save``) hold the
    vocabulary as JSON; a split or standardize function cannot be stored,
    so it is given again to ``from_config`` or ``load``. Kept in a model's
    ``preprocessors`` dict (``model.preprocessors["text"] = vectorizer``),
    a vectorizer is saved in the model file by ``model.save`` and restored
    by ``cdl.load_model`` (functions given again as its
    ``preprocessor_functions``).

    Examples
    --------
    >>> from cdl.text import TextVectorizer
    >>> vectorizer = TextVectorizer(output_sequence_length=5)
    >>> vectorizer.adapt(["The cat sat on the mat", "the dog sat"])
    TextVectorizer(vocabulary_size=8, output_sequence_length=5)
    >>> vectorizer.vocabulary()
    ['', '[UNK]', 'the', 'sat', 'on', 'mat', 'dog', 'cat']
    >>> vectorizer(["the cat sat", "a bird sat on the mat today"])
    array([[2, 7, 3, 0, 0],
           [1, 1, 3, 4, 2]])
    >>> vectorizer.decode([2, 7, 3, 0, 0])
    'the cat sat'
    """

    def __init__(self, max_tokens=None, output_sequence_length=None, split="whitespace",
                 lowercase=True, oov_token="[UNK]", pad_token="", standardize=None):
        if max_tokens is not None:
            max_tokens = check_number(max_tokens, "max_tokens", low=2, high=storage.MAX_VOCABULARY,
                                      integer=True)
        self._max_tokens = max_tokens
        self.output_sequence_length = output_sequence_length
        if isinstance(split, str):
            if split not in ("whitespace", "character"):
                raise ValueError(f"split must be 'whitespace', 'character' or a function, got "
                                 f"{split!r}" + (": wrap a tokenizer with "
                                                 "TextVectorizer.from_tokenizer"
                                                 if split == "tokenizer" else ""))
        elif not callable(split):
            hint = ": wrap a tokenizers.Tokenizer with TextVectorizer.from_tokenizer(tokenizer)" \
                if hasattr(split, "encode") else ""
            raise TypeError(f"split must be 'whitespace', 'character' or a function, got "
                            f"{type(split).__name__}{hint}")
        self._split = split
        self._lowercase = check_bool(lowercase, "lowercase")
        if standardize is not None and not callable(standardize) and \
                standardize != "strip_punctuation":
            raise ValueError(f"standardize must be None, 'strip_punctuation' or a function, got "
                             f"{standardize!r}")
        self._standardize = standardize
        for name, token in (("oov_token", oov_token), ("pad_token", pad_token)):
            if not isinstance(token, str):
                raise TypeError(f"{name} must be a str, got {type(token).__name__}")
        if oov_token == pad_token:
            raise ValueError(f"oov_token and pad_token must differ, both are {oov_token!r}")
        self._oov_token = str(oov_token)
        self._pad_token = str(pad_token)
        self._tokenizer = None
        self._add_special_tokens = False
        self._vocabulary = None
        self._index = None

    # --- settings ----------------------------------------------------------

    @property
    def max_tokens(self):
        """The largest vocabulary (padding and OOV included), or None."""
        return self._max_tokens

    @property
    def output_sequence_length(self):
        """The length of every output row, or None (each batch's longest text)."""
        return self._output_sequence_length

    @output_sequence_length.setter
    def output_sequence_length(self, value):
        if value is not None:
            value = check_number(value, "output_sequence_length", low=1,
                                 high=BLAS_INT_MAX, integer=True)
        self._output_sequence_length = value

    @property
    def split(self):
        """"whitespace", "character", the split function, or "tokenizer" for a
        vectorizer made by ``from_tokenizer``."""
        return "tokenizer" if self._tokenizer is not None else self._split

    @property
    def tokenizer(self):
        """The wrapped Hugging Face tokenizer, or None."""
        return self._tokenizer

    @property
    def lowercase(self):
        """Whether texts are lowercased first."""
        return self._lowercase

    @property
    def standardize(self):
        """None, "strip_punctuation" or the standardize function."""
        return self._standardize

    @property
    def oov_token(self):
        """The token at index 1."""
        return self._oov_token

    @property
    def pad_token(self):
        """The token at index 0."""
        return self._pad_token

    # --- the vocabulary ----------------------------------------------------

    def tokenize(self, text):
        """The tokens of one text: standardized, then split.

        Parameters
        ----------
        text : str

        Returns
        -------
        list of str

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> TextVectorizer(standardize="strip_punctuation").tokenize("Hello, World!")
        ['hello', 'world']
        """
        return self._tokens(_check_text(text, "text"))

    def _tokens(self, text):
        if self._lowercase:
            text = text.lower()
        if self._standardize == "strip_punctuation":
            text = text.translate(_PUNCTUATION)
        elif self._standardize is not None:
            text = self._standardize(text)
            if not isinstance(text, str):
                raise TypeError(f"the standardize function returned a {type(text).__name__}, "
                                "not a str")
        if self._tokenizer is not None:
            return subword.tokenize(self._tokenizer, text, self._add_special_tokens)
        if self._split == "whitespace":
            return text.split()
        if self._split == "character":
            return list(text)
        tokens = self._split(text)
        if isinstance(tokens, (str, bytes)):
            raise TypeError("the split function returned a str; it must return the list of "
                            "tokens")
        tokens = list(tokens)
        for token in tokens:
            if not isinstance(token, str):
                raise TypeError(f"the split function returned a token that is not a str: "
                                f"{token!r}")
        return tokens

    def adapt(self, texts):
        """Learn the vocabulary from ``texts``, replacing any earlier one.

        Counts every token in one pass, keeping only the counts (see the
        class's Notes), then keeps the ``max_tokens - 2`` most frequent.
        The padding and OOV tokens, should the texts hold them, are not
        counted: they keep indices 0 and 1.

        Parameters
        ----------
        texts : iterable of str
            A list, a 1-D array of strings or any iterable, a generator
            reading a file line by line for instance. Not a single str.

        Returns
        -------
        self

        Raises
        ------
        TypeError
            For a single str, or an element that is not a str (bytes and
            None included), naming its position.
        ValueError
            If the texts hold no token at all.

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> lines = (line for line in ["b a", "a c", "c a"])
        >>> TextVectorizer().adapt(lines).vocabulary()
        ['', '[UNK]', 'a', 'c', 'b']
        """
        counts = Counter()
        for i, text in enumerate(_iter_texts(texts, "texts")):
            counts.update(self._tokens(_check_text(text, f"texts[{i}]")))
        counts.pop(self._pad_token, None)
        counts.pop(self._oov_token, None)
        if not counts:
            raise ValueError("adapt found no tokens in texts (an empty iterable, an exhausted "
                             "generator, or texts that are all empty?)")
        order = (lambda item: (item[1], item[0]))
        if self._max_tokens is None:
            learned = sorted(counts.items(), key=order, reverse=True)
        else:
            learned = heapq.nlargest(self._max_tokens - 2, counts.items(), key=order)
        self._set([self._pad_token, self._oov_token] + [token for token, _ in learned])
        return self

    def set_vocabulary(self, vocabulary):
        """Use the given vocabulary instead of one learned by ``adapt``.

        Parameters
        ----------
        vocabulary : list of str
            The tokens for indices 2, 3, ...; or the whole vocabulary as
            ``vocabulary()`` returns it, starting with the padding and OOV
            tokens.

        Returns
        -------
        self

        Raises
        ------
        TypeError
            For tokens that are not strings.
        ValueError
            For an empty vocabulary, a token given twice, the padding or OOV
            token anywhere else than at the start, or more tokens than
            ``max_tokens`` allows.

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> TextVectorizer().set_vocabulary(["yes", "no"])(["no yes maybe"])
        array([[3, 2, 1]])
        """
        if isinstance(vocabulary, (str, bytes)) or vocabulary is None:
            raise TypeError(f"vocabulary must be a list of str, got "
                            f"{type(vocabulary).__name__}")
        tokens = list(vocabulary)
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"vocabulary[{i}] is a {type(token).__name__}, not a str")
        if tokens[:2] == [self._pad_token, self._oov_token]:
            tokens = tokens[2:]
        if not tokens:
            raise ValueError("the vocabulary is empty: give at least one token")

        def fail(message):
            raise ValueError(message)

        full = [self._pad_token, self._oov_token] + [str(t) for t in tokens]
        for special, index in ((self._pad_token, 0), (self._oov_token, 1)):
            if special in full[2:]:
                fail(f"the vocabulary holds the {('padding', 'OOV')[index]} token "
                     f"{special!r}, which is always at index {index}")
        self._set(storage.check_vocabulary(full, self._pad_token, self._oov_token,
                                           self._max_tokens, fail))
        return self

    def _set(self, vocabulary):
        self._vocabulary = vocabulary
        self._index = dict(zip(vocabulary, range(len(vocabulary))))

    def _fitted(self, action):
        if self._vocabulary is None:
            raise NotFittedError(f"this TextVectorizer has no vocabulary yet; call adapt or "
                                 f"set_vocabulary before {action}")

    def vocabulary(self, include_special_tokens=True):
        """The tokens, in index order (a new list).

        Parameters
        ----------
        include_special_tokens : bool
            Start with the padding and OOV tokens (indices 0 and 1).

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> TextVectorizer().adapt(["a b b"]).vocabulary(include_special_tokens=False)
        ['b', 'a']
        """
        self._fitted("vocabulary")
        include = check_bool(include_special_tokens, "include_special_tokens")
        return list(self._vocabulary if include else self._vocabulary[2:])

    def vocabulary_size(self):
        """The number of tokens, padding and OOV included: the ``input_dim``
        of an ``Embedding`` that reads this vectorizer's output.

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> TextVectorizer().adapt(["a b b"]).vocabulary_size()
        4
        """
        self._fitted("vocabulary_size")
        return len(self._vocabulary)

    # --- texts to ids and back -------------------------------------------

    def __call__(self, texts):
        """The token ids of ``texts``.

        Parameters
        ----------
        texts : str or iterable of str
            One text, or a batch (a list, a 1-D array of strings, any
            iterable).

        Returns
        -------
        ndarray of int64
            ``(len(texts), length)`` for a batch, ``(length,)`` for one
            text, where ``length`` is ``output_sequence_length`` or, if
            that is None, the number of tokens of the longest text. Rows
            are padded at the end with 0 and cut at the end.

        Raises
        ------
        TypeError
            For a text that is not a str (bytes and None included), naming
            its position.
        NotFittedError
            Before ``adapt`` or ``set_vocabulary``.
        """
        self._fitted("vectorizing texts")
        single = isinstance(texts, str)
        batch = [texts] if single else list(_iter_texts(texts, "texts"))
        index, oov = self._index, 1
        rows = [[index.get(token, oov) for token in self._tokens(
            _check_text(text, "texts" if single else f"texts[{i}]"))]
            for i, text in enumerate(batch)]
        length = self._output_sequence_length
        if length is None:
            length = max((len(row) for row in rows), default=0)
        out = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            row = row[:length]
            out[i, :len(row)] = row
        return out[0] if single else out

    def decode(self, ids, separator=None):
        """Texts from token ids, leaving the padding (id 0) out.

        Parameters
        ----------
        ids : array_like of int
            One sequence (1-D) or a batch (2-D).
        separator : str, optional
            What joins the tokens: by default a space, or nothing for the
            "character" split. A vectorizer made by ``from_tokenizer`` joins
            them with its tokenizer's decoder instead, unless a separator is
            given.

        Returns
        -------
        str for one sequence, list of str for a batch

        Raises
        ------
        TypeError
            For ids that are not integers.
        ValueError
            For an id outside the vocabulary, or ids of more than 2 axes.

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> chars = TextVectorizer(split="character").adapt(["abba"])
        >>> chars.vocabulary()
        ['', '[UNK]', 'b', 'a']
        >>> chars.decode([[2, 3, 0], [3, 1, 2]])
        ['ba', 'a[UNK]b']
        """
        self._fitted("decode")
        if separator is not None and not isinstance(separator, str):
            raise TypeError(f"separator must be a str, got {type(separator).__name__}")
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            if ids.size or ids.dtype.kind not in "f":
                raise TypeError(f"ids must be integers, got an array of {ids.dtype}")
            ids = ids.astype(np.int64)   # an empty list
        if ids.ndim not in (1, 2):
            raise ValueError(f"ids must be one sequence (1-D) or a batch (2-D), got shape "
                             f"{ids.shape}")
        bad = np.flatnonzero((ids < 0) | (ids >= len(self._vocabulary)))
        if bad.size:
            raise ValueError(f"id {ids.flat[bad[0]]} is outside the vocabulary [0, "
                             f"{len(self._vocabulary)})")
        if ids.ndim == 1:
            return self._decode_row(ids, separator)
        return [self._decode_row(row, separator) for row in ids]

    def _decode_row(self, row, separator):
        tokens = [self._vocabulary[i] for i in row.tolist() if i != 0]
        if self._tokenizer is not None and separator is None:
            return subword.decode(self._tokenizer, tokens, self._oov_token)
        if separator is None:
            separator = "" if self._split == "character" else " "
        return separator.join(tokens)

    # --- Hugging Face tokenizers -------------------------------------------

    @classmethod
    def from_tokenizer(cls, tokenizer, output_sequence_length=None, max_tokens=None,
                       lowercase=False, standardize=None, oov_token="[UNK]", pad_token="",
                       add_special_tokens=False):
        """A vectorizer that splits texts into subwords with a Hugging Face tokenizer.

        The tokenizer (a ``tokenizers.Tokenizer``: ``pip install
        'cdl[text]'``) replaces ``split``: its normalizer, pre-tokenizer and
        model turn each text into token strings, which the vectorizer looks
        up in its own vocabulary as usual, with 0 for padding and 1 for
        unknown tokens. With ``max_tokens=None`` the vocabulary is the
        tokenizer's, in the order of its ids (its tokens equal to
        ``pad_token`` or ``oov_token`` take indices 0 and 1), and no
        ``adapt`` is needed; with ``max_tokens``, ``adapt`` learns the most
        frequent subwords of a corpus. ``decode`` joins tokens with the
        tokenizer's decoder. The tokenizer is saved with the vectorizer,
        in its own JSON form.

        Parameters
        ----------
        tokenizer : tokenizers.Tokenizer
        output_sequence_length, max_tokens, oov_token, pad_token
            As for the constructor. Pass ``oov_token`` (``pad_token``) the
            tokenizer's own unknown (padding) token, e.g. "[UNK]", so that
            it takes index 1 (0).
        lowercase : bool
            Lowercase before the tokenizer; off by default, since a
            tokenizer's normalizer does what its vocabulary expects.
        standardize : {None, "strip_punctuation"} or callable
            Applied before the tokenizer.
        add_special_tokens : bool
            Let the tokenizer add its special tokens (``[CLS]``, ...) as its
            post-processor says.

        Returns
        -------
        TextVectorizer

        Raises
        ------
        TypeError
            If ``tokenizer`` lacks the methods of a ``tokenizers.Tokenizer``.
        """
        vectorizer = cls(max_tokens=max_tokens, output_sequence_length=output_sequence_length,
                         lowercase=lowercase, oov_token=oov_token, pad_token=pad_token,
                         standardize=standardize)
        vectorizer._wrap(tokenizer, add_special_tokens)
        if max_tokens is None:
            tokens = subword.vocabulary(tokenizer, pad_token, oov_token)
            if not tokens:
                raise ValueError("the tokenizer's vocabulary is empty (train or load it first)")
            vectorizer._set(storage.check_vocabulary(
                [pad_token, oov_token] + tokens, pad_token, oov_token, None, _raise_value_error))
        return vectorizer

    def _wrap(self, tokenizer, add_special_tokens):
        """Split with ``tokenizer`` from now on."""
        self._tokenizer = subword.check_tokenizer(tokenizer)
        self._add_special_tokens = check_bool(add_special_tokens, "add_special_tokens")

    # --- configs and files -------------------------------------------------

    def get_config(self):
        """The settings and the vocabulary, as JSON-compatible values.

        A split or standardize function is recorded as ``"callable"`` (pass
        it again to ``from_config``); a wrapped tokenizer as its JSON.
        ``"vocabulary"`` is None before ``adapt``.

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> config = TextVectorizer(max_tokens=10).adapt(["a b b"]).get_config()
        >>> config["max_tokens"], config["vocabulary"]
        (10, ['', '[UNK]', 'b', 'a'])
        >>> TextVectorizer.from_config(config).vocabulary_size()
        4
        """
        config = {
            "max_tokens": self._max_tokens,
            "output_sequence_length": self._output_sequence_length,
            "split": "tokenizer" if self._tokenizer is not None else
            self._split if isinstance(self._split, str) else "callable",
            "lowercase": self._lowercase,
            "standardize": self._standardize if self._standardize in (None, "strip_punctuation")
            else "callable",
            "oov_token": self._oov_token,
            "pad_token": self._pad_token,
            "vocabulary": None if self._vocabulary is None else list(self._vocabulary),
        }
        if self._tokenizer is not None:
            config["tokenizer"] = subword.to_json(self._tokenizer)
            config["add_special_tokens"] = self._add_special_tokens
        return config

    @classmethod
    def from_config(cls, config, split=None, standardize=None, where="config"):
        """A vectorizer from ``get_config``'s dict, checked as a file is.

        Parameters
        ----------
        config : dict
        split, standardize : callable, optional
            The functions of a vectorizer made with them (the config records
            only that there was one); refused for a config without.
        where : str
            What the config is, for error messages.

        Raises
        ------
        ValueError
            For a config that is not valid (naming the problem), or that
            needs a function not given.
        ImportError
            For a config with a Hugging Face tokenizer, without the
            ``tokenizers`` package.

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> words = TextVectorizer(split=str.split).adapt(["x y"])
        >>> TextVectorizer.from_config(words.get_config(), split=str.split).vocabulary()
        ['', '[UNK]', 'y', 'x']
        """
        config = storage.check_config(config, where)
        arguments = {}
        for name, given in (("split", split), ("standardize", standardize)):
            recorded = config[name]
            if recorded == "callable":
                if given is None:
                    raise ValueError(f"{where}: the vectorizer was made with a {name} function, "
                                     f"which a config cannot hold: pass it again as {name}=")
                if not callable(given):
                    raise TypeError(f"{name} must be a function, got {type(given).__name__}")
                arguments[name] = given
            else:
                if given is not None:
                    raise ValueError(f"{where}: {name} is {recorded!r} in the config; a {name} "
                                     "function replaces only one recorded as 'callable'")
                if name == "standardize" or recorded != "tokenizer":
                    arguments[name] = recorded
        common = {"output_sequence_length": config["output_sequence_length"],
                  "max_tokens": config["max_tokens"], "lowercase": config["lowercase"],
                  "standardize": arguments["standardize"], "oov_token": config["oov_token"],
                  "pad_token": config["pad_token"]}
        vectorizer = cls(split=arguments.get("split", "whitespace"), **common)
        if config["split"] == "tokenizer":
            vectorizer._wrap(subword.from_json(config["tokenizer"], where),
                             config["add_special_tokens"])
        if config["vocabulary"] is not None:
            vectorizer._set(config["vocabulary"])
        return vectorizer

    def save(self, path):
        """Write the vectorizer to a JSON file, atomically (no pickle: see
        ``cdl.text.storage`` for the layout).

        Examples
        --------
        >>> from cdl.text import TextVectorizer
        >>> TextVectorizer().adapt(["to be or not to be"]).save("words.json")
        >>> TextVectorizer.load("words.json").vocabulary()
        ['', '[UNK]', 'to', 'be', 'or', 'not']
        """
        storage.write(path, storage.check_config(self.get_config()))

    @classmethod
    def load(cls, path, split=None, standardize=None, max_bytes=storage.MAX_BYTES):
        """A vectorizer from a file ``save`` wrote.

        Parameters
        ----------
        path : str or os.PathLike
        split, standardize : callable, optional
            As for ``from_config``.
        max_bytes : int
            The largest file read (256 MiB by default).

        Raises
        ------
        ValueError
            For a file that is not a valid vectorizer file, naming the
            problem (wrong types, repeated keys or tokens, sizes that
            disagree, a file too large, ...).
        """
        max_bytes = check_number(max_bytes, "max_bytes", low=1, integer=True)
        config = storage.read(path, max_bytes)
        return cls.from_config(config, split=split, standardize=standardize, where=str(path))

    def __repr__(self):
        size = "not adapted" if self._vocabulary is None else \
            f"vocabulary_size={len(self._vocabulary)}"
        length = "" if self._output_sequence_length is None else \
            f", output_sequence_length={self._output_sequence_length}"
        return f"TextVectorizer({size}{length})"


def _raise_value_error(message):
    raise ValueError(message)


def _iter_texts(texts, name):
    """Iterate over a batch of texts, refusing a single string or bytes."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{name} must be an iterable of str, not a single "
                        f"{type(texts).__name__}: wrap one text in a list")
    if isinstance(texts, np.ndarray) and texts.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of strings, got shape {texts.shape}")
    try:
        return iter(texts)
    except TypeError:
        raise TypeError(f"{name} must be an iterable of str, got "
                        f"{type(texts).__name__}") from None


def _check_text(text, name):
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        raise TypeError(f"{name} is bytes; decode it first, e.g. text.decode('utf-8')")
    raise TypeError(f"{name} must be a str, got {'None' if text is None else type(text).__name__}")
