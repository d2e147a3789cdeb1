"""Generating token sequences from a causal language model."""

import numbers

import numpy as np

from cdl._validation import check_number

__all__ = ["generate"]


def generate(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, seed=None,
             context_length=None):
    """Extend prompts one token at a time with a causal language model's predictions.

    At each step the model reads the last tokens of each sequence (its
    window), the logits at the position of the last real token give the
    distribution of the next one, and the sampled token is appended.

    Parameters
    ----------
    model : cdl.Sequential, cdl.Model or callable
        Maps token ids of shape ``(batch, T)`` to logits of shape
        ``(batch, T, vocabulary_size)``, where the logits at position ``t``
        depend only on the tokens at positions ``<= t`` (a causal model:
        causal attention, ``Conv1D(padding="causal")``, forward recurrent
        layers, or layers that act on each position alone). It runs in
        inference mode (``model(x)``, so dropout is off).
    prompt_ids : list of int, or array_like of int of shape ``(n,)`` or ``(batch, n)``
        The prompts, at least one token each. The prompts of a batch have
        one length, and each continues after its last position: padding
        them to one length would leave the padding inside the text.
    max_new_tokens : int >= 0
        How many tokens to append to each prompt.
    temperature : float >= 0
        Divides the logits before the softmax: below 1 sharpens the
        distribution, above 1 flattens it. 0 is greedy decoding: the most
        likely token (the lowest id among equals), without randomness.
    top_k : int >= 1, optional
        Sample only among the ``top_k`` most likely tokens (the lowest ids
        among equals at the cut), so ``top_k=1`` is greedy decoding.
    seed : None, int or numpy.random.Generator
        The randomness of sampling: the same int gives the same tokens for
        the same model, prompts and settings. Each step draws one uniform
        number per sequence, in batch order.
    context_length : int >= 1, optional
        The most tokens the model reads at once. Longer sequences are cut
        to their last ``context_length`` tokens (a sliding window). By
        default the model's input length; a model with a fixed input length
        takes at most that. A cdl model that is not built yet (no
        ``input_shape``) needs it, and is built for that length.

    Returns
    -------
    ndarray of int64
        The prompts followed by the new tokens: ``(n + max_new_tokens,)``
        for one prompt, ``(batch, n + max_new_tokens)`` for a batch.

    Raises
    ------
    TypeError
        For prompt ids that are not integers, or a ``model`` that is not
        callable.
    ValueError
        For an empty or negative prompt, bad settings, a model that has no
        input length where one is needed, or logits that are not of shape
        ``(batch, T, vocabulary_size)`` or are NaN.

    Notes
    -----
    cdl models read inputs of a fixed length ``L`` (their input shape). The
    window therefore always has ``L`` positions: the last
    ``min(len(sequence), context_length)`` tokens from position 0 on,
    padded at the end with 0, and the next token is sampled from the logits
    at the window's last real token. For a causal model the padding after
    that position changes nothing, and the tokens sit at the positions they
    had in training (a window of text starting at position 0), unlike
    padding at the start, which would shift them. A model without a fixed
    input length (a plain function, say) reads the window unpadded, and the
    whole sequence if no ``context_length`` is given. Every step runs the
    model on the whole window: there is no cache of earlier positions.

    Examples
    --------
    A model that always predicts "next = current + 1" (its embedding of
    token ``i`` is the one-hot vector of ``i + 1``, and its output layer is
    the identity), so greedy decoding counts up:

    >>> import numpy as np
    >>> import cdl
    >>> from cdl import layers
    >>> from cdl.text import generate
    >>> model = cdl.Sequential([layers.Embedding(10, 10), layers.Dense(10, use_bias=False)],
    ...                        input_shape=(4,), seed=0)
    >>> model.set_weights([np.roll(np.eye(10), 1, axis=1), np.eye(10)])
    >>> generate(model, [3, 4], max_new_tokens=5, temperature=0)
    array([3, 4, 5, 6, 7, 8, 9])
    >>> generate(model, [[1], [6]], max_new_tokens=2, top_k=1)
    array([[1, 2, 3],
           [6, 7, 8]])
    >>> generate(model, [1], max_new_tokens=6, seed=0).shape   # sampled: seeded
    (7,)
    """
    if not callable(model):
        raise TypeError(f"model must be a cdl model or a callable, got {type(model).__name__}")
    prompt = _as_prompt(prompt_ids)
    single = prompt.ndim == 1
    sequences = prompt[None] if single else prompt
    max_new_tokens = check_number(max_new_tokens, "max_new_tokens", low=0, integer=True)
    temperature = check_number(temperature, "temperature", low=0.0)
    if top_k is not None:
        top_k = check_number(top_k, "top_k", low=1, integer=True)
    if context_length is not None:
        context_length = check_number(context_length, "context_length", low=1, integer=True)
    rng = _generator(seed)
    fixed = _input_length(model)
    if fixed is None and _unbuilt_cdl_model(model):
        # Its first forward pass builds it for the length it is given, and
        # that length stays: the window's.
        if context_length is None:
            raise ValueError("the model has no input shape yet, so generate cannot tell how "
                             "many tokens it reads: build it (input_shape=(T,)) or pass "
                             "context_length")
        fixed = context_length
    if fixed is not None and context_length is not None and context_length > fixed:
        raise ValueError(f"context_length {context_length} exceeds the model's input length "
                         f"{fixed}")
    window = context_length if context_length is not None else fixed
    batch = sequences.shape[0]
    out = np.zeros((batch, sequences.shape[1] + max_new_tokens), dtype=np.int64)
    out[:, :sequences.shape[1]] = sequences
    length = sequences.shape[1]
    for step in range(max_new_tokens):
        used = length if window is None else min(length, window)
        width = fixed if fixed is not None else used
        x = np.zeros((batch, width), dtype=np.int64)
        x[:, :used] = out[:, length - used:length]
        logits = _logits(model, x, step)
        out[:, length] = _choose(logits[:, used - 1], temperature, top_k, rng, step)
        length += 1
    return out[0] if single else out


def _as_prompt(prompt_ids):
    if isinstance(prompt_ids, (str, bytes)) or prompt_ids is None:
        raise TypeError("prompt_ids must be token ids (a list of int or an integer array), "
                        f"got {'None' if prompt_ids is None else type(prompt_ids).__name__}"
                        + ("; turn text into ids with a TextVectorizer first"
                           if isinstance(prompt_ids, str) else ""))
    try:
        prompt = np.asarray(prompt_ids)
    except ValueError:
        raise ValueError("prompt_ids must have one length for every prompt; generate "
                         "extends a batch of prompts of equal length") from None
    if prompt.dtype.kind == "O" and prompt.size and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in prompt.flat):
        raise ValueError("prompt_ids holds an id too large for int64")
    if prompt.dtype.kind not in "iu" and not (prompt.size == 0 and prompt.dtype.kind == "f"):
        raise TypeError(f"prompt_ids must be integers, got {prompt.dtype} values")
    if prompt.ndim not in (1, 2):
        raise ValueError(f"prompt_ids must be one prompt (1-D) or a batch of prompts (2-D), "
                         f"got shape {prompt.shape}")
    if prompt.shape[-1] == 0 or prompt.shape[0] == 0:
        raise ValueError(f"prompt_ids is empty (shape {prompt.shape}): a prompt needs at least "
                         "one token, a start token for instance")
    if prompt.dtype.kind == "u" and prompt.dtype.itemsize == 8 and prompt.max() > 2 ** 63 - 1:
        raise ValueError("prompt_ids holds an id too large for int64")
    prompt = prompt.astype(np.int64)
    if prompt.min() < 0:
        raise ValueError(f"prompt_ids holds the negative id {prompt.min()}")
    return prompt


def _generator(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        seed = check_number(seed, "seed", low=0, integer=True)
    return np.random.default_rng(seed)


def _input_length(model):
    """The fixed number of tokens the model reads, or None."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        return None
    if isinstance(shape, list) or len(shape) != 1 or not isinstance(shape[0], numbers.Integral):
        raise ValueError(f"the model's input shape is {shape}; a language model reads one "
                         "input of token ids, of shape (T,)")
    return int(shape[0])


def _unbuilt_cdl_model(model):
    return getattr(model, "built", None) is False


def _logits(model, x, step):
    logits = model(x)
    if isinstance(logits, (list, tuple)):
        raise ValueError(f"the model returned {len(logits)} outputs; generate needs one, the "
                         "logits")
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[:2] != x.shape or logits.shape[2] < 1:
        raise ValueError(f"the model maps token ids of shape {x.shape} to an output of shape "
                         f"{logits.shape}; generate needs logits of shape (batch, T, "
                         "vocabulary_size), one distribution per position")
    return logits


def _choose(logits, temperature, top_k, rng, step):
    """The next token of each row of ``logits`` (batch, vocabulary)."""
    logits = logits.astype(np.float64)
    if np.isnan(logits).any() or np.isposinf(logits).any():
        raise ValueError(f"the model's logits at step {step} hold NaN or +inf")
    if np.isneginf(logits).all(axis=1).any():
        raise ValueError(f"the model's logits at step {step} are all -inf for a sequence: no "
                         "token can follow")
    if temperature == 0 or top_k == 1:
        return np.argmax(logits, axis=1)
    # The candidates of each row, most likely first, the lowest id first among
    # equals (a stable sort), so that top_k=1 picks what argmax picks.
    order = np.argsort(-logits, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    kept = np.take_along_axis(logits, order, axis=1)
    # The largest is first: subtracted before dividing, it leaves exponents
    # <= 0, and a tiny temperature sends the others to -inf, never to NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        kept = (kept - kept[:, :1]) / temperature
    weights = np.exp(kept)
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(logits.shape[0])
    # A token of weight 0 spans an empty interval of the cumulative sum, so
    # it is never chosen; the clip guards u * total rounding up to total.
    picks = np.array([np.searchsorted(row, value * row[-1], side="right")
                      for row, value in zip(cumulative, u)])
    last = (weights > 0).shape[1] - 1 - np.argmax((weights > 0)[:, ::-1], axis=1)
    picks = np.minimum(picks, last)
    return order[np.arange(order.shape[0]), picks]
