"""Wrapping a Hugging Face ``tokenizers.Tokenizer`` for subword vocabularies.

``TextVectorizer.from_tokenizer`` uses a tokenizer in two places: as the
split (its ``encode(...).tokens``, after its own normalizer and
pre-tokenizer) and in ``decode``, where its decoder joins subword pieces
back into text. The vectorizer keeps its own vocabulary of token strings,
so that index 0 is always the padding and index 1 the OOV token whatever
ids the tokenizer uses. The tokenizer is stored in the vectorizer's config
as its own JSON (``Tokenizer.to_str``), which ``Tokenizer.from_str`` reads
back: no code is imported or run to load it.

The ``tokenizers`` package is optional (``pip install 'cdl[text]'``) and
imported only to load a stored tokenizer; any object with the methods named
in ``check_tokenizer`` can be wrapped.
"""

__all__ = ["METHODS", "check_tokenizer", "tokenize", "vocabulary", "decode", "to_json",
           "from_json"]

#: The methods of ``tokenizers.Tokenizer`` a wrapped tokenizer must have.
METHODS = ("encode", "decode", "get_vocab", "token_to_id", "to_str")


def check_tokenizer(tokenizer):
    """Return ``tokenizer`` if it has the methods of a ``tokenizers.Tokenizer``
    that wrapping it needs, else raise ``TypeError``.

    Examples
    --------
    >>> check_tokenizer("bert-base-uncased")
    Traceback (most recent call last):
    ...
    TypeError: tokenizer must be a tokenizers.Tokenizer, got a str (a name or a path?): load it first, e.g. tokenizers.Tokenizer.from_file(path)
    """
    if isinstance(tokenizer, (str, bytes, bytearray)):
        raise TypeError(f"tokenizer must be a tokenizers.Tokenizer, got a "
                        f"{type(tokenizer).__name__} (a name or a path?): load it first, e.g. "
                        "tokenizers.Tokenizer.from_file(path)")
    missing = [name for name in METHODS if not callable(getattr(tokenizer, name, None))]
    if missing:
        raise TypeError("tokenizer must be a tokenizers.Tokenizer (or have its methods "
                        f"{', '.join(METHODS)}); got a {type(tokenizer).__name__}, without "
                        f"{', '.join(missing)}")
    return tokenizer


def tokenize(tokenizer, text, add_special_tokens):
    """The token strings the tokenizer gives for ``text``.

    Examples
    --------
    >>> class Letters:   # what a tokenizers.Tokenizer's encode returns, in miniature
    ...     def encode(self, text, add_special_tokens=False):
    ...         return type("Encoding", (), {"tokens": list(text)})()
    >>> tokenize(Letters(), "abc", False)
    ['a', 'b', 'c']
    """
    tokens = tokenizer.encode(text, add_special_tokens=add_special_tokens).tokens
    tokens = list(tokens)
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"the tokenizer gave a token that is not a str: {token!r}")
    return tokens


def vocabulary(tokenizer, pad_token, oov_token):
    """The tokenizer's tokens in the order of its ids, without ``pad_token``
    and ``oov_token`` (which a vectorizer puts at indices 0 and 1).

    Examples
    --------
    >>> class Tiny:
    ...     def get_vocab(self, with_added_tokens=True):
    ...         return {"b": 2, "[UNK]": 0, "a": 1}
    >>> vocabulary(Tiny(), "", "[UNK]")
    ['a', 'b']
    """
    found = tokenizer.get_vocab(with_added_tokens=True)
    if not isinstance(found, dict):
        raise TypeError(f"the tokenizer's get_vocab returned a {type(found).__name__}, not a dict")
    for token, index in found.items():
        if not isinstance(token, str) or isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"the tokenizer's vocabulary maps {token!r} to {index!r}; expected "
                            "strings to integer ids")
    return [token for token, _ in sorted(found.items(), key=lambda item: item[1])
            if token not in (pad_token, oov_token)]


def decode(tokenizer, tokens, oov_token):
    """Text from token strings, through the tokenizer's decoder. Tokens the
    tokenizer does not know (the vectorizer's own OOV token, when the
    tokenizer has no such token) are kept as they are, between the decoded
    runs of the others.

    Examples
    --------
    >>> class Tiny:
    ...     ids = {"hel": 0, "lo": 1}
    ...     def token_to_id(self, token):
    ...         return self.ids.get(token)
    ...     def decode(self, ids, skip_special_tokens=False):
    ...         return "".join(t for t, i in sorted(self.ids.items(), key=lambda x: x[1])
    ...                        for j in ids if i == j)
    >>> decode(Tiny(), ["hel", "lo", "[UNK]", "lo"], "[UNK]")
    'hello [UNK] lo'
    """
    pieces, run = [], []
    for token in tokens:
        index = tokenizer.token_to_id(token)
        if index is None:
            if run:
                pieces.append(tokenizer.decode(run, skip_special_tokens=False))
                run = []
            pieces.append(token)
        else:
            run.append(index)
    if run:
        pieces.append(tokenizer.decode(run, skip_special_tokens=False))
    return " ".join(pieces)


def to_json(tokenizer):
    """The tokenizer's own JSON form (``Tokenizer.to_str``), for a config.

    Examples
    --------
    >>> class Tiny:
    ...     def to_str(self):
    ...         return '{"model": {}}'
    >>> to_json(Tiny())
    '{"model": {}}'
    """
    text = tokenizer.to_str()
    if not isinstance(text, str):
        raise TypeError(f"the tokenizer's to_str returned a {type(text).__name__}, not a str")
    return text


def from_json(text, where="config"):
    """A ``tokenizers.Tokenizer`` from its JSON form (``Tokenizer.from_str``).

    Raises
    ------
    ImportError
        If the optional ``tokenizers`` package is not installed.
    ValueError
        If ``text`` is not a tokenizer's JSON.

    Examples
    --------
    >>> from_json("not json")   # doctest: +SKIP
    Traceback (most recent call last):
    ...
    ValueError: config: the stored tokenizer could not be read (...)
    """
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise ImportError("this vectorizer wraps a Hugging Face tokenizer, which needs the "
                          "tokenizers package: pip install 'cdl[text]'",
                          name=getattr(error, "name", None)) from error
    try:
        return Tokenizer.from_str(text)
    except Exception as error:  # noqa: BLE001 - the Rust parser raises plain Exceptions
        raise ValueError(f"{where}: the stored tokenizer could not be read ({error})") from None
