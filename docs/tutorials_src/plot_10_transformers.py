"""
Attention and Transformers: reading digits row by row
=====================================================

A dense layer mixes the features of one sample, a convolution those of
neighbouring pixels, a recurrent layer carries a state from step to step.
Attention does something else: at each position of a sequence it computes
a weighted average of the whole sequence, with weights that depend on the
content. This tutorial builds one attention head by hand in NumPy, checks
it against :class:`cdl.layers.MultiHeadAttention`, assembles the parts of a
Transformer encoder block, and trains one to recognise handwritten digits
read as sequences of 8 rows, beside an LSTM.
"""

# %%
# Queries, keys and values
# ------------------------
# Take a sequence of ``T`` vectors of width ``E``, ``x`` of shape
# ``(T, E)``. Three dense projections (no activation) turn each position into
#
# * a **query** ``q_i = x_i Wq + bq``: what position i is looking for;
# * a **key** ``k_j = x_j Wk + bk``: what position j offers to be found by;
# * a **value** ``v_j = x_j Wv + bv``: what position j hands over when found.
#
# How well query i matches key j is their dot product. Divided by
# ``sqrt(d)`` (``d`` the width of a key, so that the scores of wide keys do
# not grow with their width and saturate the softmax) these **scores** form
# a ``(T, T)`` matrix. A softmax along each row turns row i into weights
# that are positive and sum to 1, and the output at position i is the
# weighted average of the values:
#
# .. math::
#
#    \mathrm{attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V
#
# Every output position can thus draw on any input position, however far
# away, in one step: what a recurrent layer has to carry through its state.
import time

import matplotlib.pyplot as plt
import numpy as np

import cdl
import cdl.explain
import cdl.text
from cdl import data, datasets, layers, optimizers

rng = np.random.default_rng(0)
T, E = 5, 8
x = rng.standard_normal((T, E))


def softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))   # minus the max: no overflow
    return e / e.sum(axis=-1, keepdims=True)


Wq, Wk, Wv = (rng.standard_normal((E, 4)) * 0.5 for _ in range(3))
q, k, v = x @ Wq, x @ Wk, x @ Wv                       # (T, 4) each
weights = softmax(q @ k.T / np.sqrt(4))               # (T, T), rows sum to 1
head = weights @ v                                    # (T, 4)
print("weights of position 0:", weights[0].round(3), "sum", weights[0].sum().round(6))

# %%
# Several heads
# -------------
# One softmax picks one kind of relation. **Multi-head** attention runs
# ``H`` heads side by side, each with its own narrower projections
# (``key_dim`` features each), concatenates their outputs and projects them
# back with an output kernel ``Wo``. In :class:`~cdl.layers.MultiHeadAttention`
# the heads share one kernel per projection: head h owns columns
# ``h * key_dim`` to ``(h + 1) * key_dim - 1``. Its ``params`` are, in order,
# the query, key, value and output kernels, each followed by its bias
# (PyTorch's ``nn.MultiheadAttention`` holds the same numbers). We redo its
# computation with those weights:
H, D = 2, 4
mha = layers.MultiHeadAttention(num_heads=H, key_dim=D, bias_initializer="glorot_uniform",
                                return_attention_scores=True)
out = mha(x[None])                                    # a batch of one sequence
wq, bq, wk, bk, wv, bv, wo, bo = mha.params

by_hand, all_weights = [], []
for h in range(H):
    cols = slice(h * D, (h + 1) * D)
    qh, kh, vh = x @ wq[:, cols] + bq[cols], x @ wk[:, cols] + bk[cols], x @ wv[:, cols] + bv[cols]
    w = softmax(qh @ kh.T / np.sqrt(D))
    all_weights.append(w)
    by_hand.append(w @ vh)
by_hand = np.concatenate(by_hand, axis=1) @ wo + bo
print("same output as the layer:", np.allclose(by_hand, out[0]))
print("same weights as last_attention_scores:",
      np.allclose(np.stack(all_weights), mha.last_attention_scores[0]))

# %%
# Causal masks
# ------------
# A language model predicts the next token from the ones before it, so
# position i must not look at positions after i. A **mask** sets the
# scores it forbids to minus infinity before the softmax, which gives them
# weight 0: the **causal** mask forbids j > i. ``causal=True`` does that
# (and ``attention_mask`` takes any boolean matrix, True where a query may
# attend to a key).
causal_scores = qh @ kh.T / np.sqrt(D)                # the last head's scores
causal_scores[np.triu_indices(T, k=1)] = -np.inf
causal_weights = softmax(causal_scores)
mha(x[None], causal=True)
print(causal_weights.round(2))
print("same causal weights:", np.allclose(causal_weights, mha.last_attention_scores[0, -1]))

# %%
# Where a token stands
# --------------------
# Attention treats its keys as a set: a weighted average does not depend
# on the order of the things averaged. Shuffle the positions of the input
# and the output is shuffled the same way, nothing else changes:
order = rng.permutation(T)
print("shuffling the input shuffles the output:",
      np.allclose(mha(x[None, order]), mha(x[None])[:, order]))

# %%
# Order matters for text and for images read row by row, so Transformers
# add to each position a vector that says where it stands:
# :class:`~cdl.layers.PositionalEmbedding` adds row t of a table, learned
# (the default) or the fixed sinusoids of "Attention is all you need"
# (``learned=False``), drawn here. After it, the same token at two positions
# gives two different queries, keys and values. Another way, which many
# language models use, is **rotary position embedding**
# (``MultiHeadAttention(..., rope=True)``, or ``rope=True`` on the
# Transformer blocks): each head's queries and keys are turned by angles
# proportional to their positions, so that the score of a query and a key
# depends on how far apart they stand, not on where.
table = layers.PositionalEmbedding(max_length=32, learned=False)(np.zeros((1, 32, 16)))[0]
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.imshow(table.T, aspect="auto", cmap="coolwarm")
ax.set_xlabel("position t")
ax.set_ylabel("feature")
ax.set_title("sinusoidal position vectors")
fig.tight_layout()

# %%
# The encoder block
# -----------------
# A Transformer stacks **encoder blocks**
# (:class:`~cdl.layers.TransformerEncoder`, equal to PyTorch's
# ``nn.TransformerEncoderLayer``). Each has two parts, attention (which
# mixes positions) and a small two-layer feed-forward network applied to
# each position alone (which mixes features), and each part is wrapped the
# same way: its input is added back to its output (a **residual**
# connection, so that gradients reach early layers through the sums, as in
# residual networks) and the sum is normalised per position with
# :class:`~cdl.layers.LayerNorm`::
#
#     h = norm1(x + dropout(attention(x)))
#     y = norm2(h + dropout(dense2(dropout(relu(dense1(h))))))
#
# ``norm_first=True`` normalises before each part instead, which trains
# more stably in deep stacks. The width ``d_model`` is the input's, which
# the heads split between them (here 4 heads of 8 features).
block = layers.TransformerEncoder(num_heads=4, dim_feedforward=64, dropout=0.0)
print(block(rng.standard_normal((2, 8, 32))).shape, "->",
      [p.shape for p in block.params][:2], "...", len(block.params), "weight arrays")

# %%
# A sequence task: digits read row by row
# ---------------------------------------
# The bundled 8x8 digits become sequences of 8 "tokens", one per row of 8
# pixels. A dense layer projects each row to 32 features, the positional
# embedding adds its row number, one encoder block lets every row look at
# every other, ``GlobalAvgPool1D`` averages the 8 positions and a dense
# layer gives the 10 logits.
X, y = datasets.load_digits(return_X_y=True)
X = (X / 16).reshape(-1, 8, 8).astype(np.float32)     # (samples, rows = time, pixels)
x_train, x_test, y_train, y_test = data.train_test_split(X, y, test_size=0.25, seed=0)
EPOCHS = 20

transformer = cdl.Sequential([
    layers.Dense(32),
    layers.PositionalEmbedding(max_length=8),
    layers.TransformerEncoder(num_heads=4, dim_feedforward=64, dropout=0.0, norm_first=True,
                              name="encoder"),
    layers.GlobalAvgPool1D(),
    layers.Dense(10),
], input_shape=(8, 8), seed=0, name="digit_rows")
transformer.compile(optimizers.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
start = time.perf_counter()
transformer.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0)
seconds_transformer = time.perf_counter() - start
print("Transformer:", transformer.evaluate(x_test, y_test))

# %%
# The same task on an LSTM
# ------------------------
# An LSTM reads the same 8 rows one after the other and classifies from its
# final state. Both models have a few thousand weights.
lstm = cdl.Sequential([layers.LSTM(32), layers.Dense(10)], input_shape=(8, 8), seed=0)
lstm.compile(optimizers.Adam(lr=1e-2), "cross_entropy", metrics=["accuracy"])
start = time.perf_counter()
lstm.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0)
seconds_lstm = time.perf_counter() - start
print("LSTM:", lstm.evaluate(x_test, y_test))
for name, model, seconds in [("Transformer", transformer, seconds_transformer),
                             ("LSTM", lstm, seconds_lstm)]:
    print(f"{name:12s} {model.count_params():6d} weights  {seconds:5.1f} s to train")

# %%
# Both pass 95% on the test digits, and on 8 steps the LSTM does at least
# as well: a sequence this short is easy for a recurrent state to carry,
# and the LSTM's gates suit it. Attention's advantages show on long
# sequences, where it reaches any position in one step instead of through
# every step between, and computes all positions at once instead of one
# after the other. (The times are those of the machine that built this
# page.)
#
# What the heads look at
# ----------------------
# :func:`cdl.explain.attention_scores` runs the model at inference and
# returns the softmax weights of every attention layer, those inside
# Transformer blocks too, keyed by name (``"<block>/self_attention"``),
# each ``(samples, heads, rows, rows)``: row i of a head's matrix says how
# much each image row contributed to position i. (Switching on a layer's
# ``return_attention_scores`` keeps them in ``last_attention_scores``;
# ``attention_scores`` does that for the passes and restores the model.)
all_scores = cdl.explain.attention_scores(transformer, x_test[:1])
print(list(all_scores))
scores = all_scores["encoder/self_attention"][0]       # sample 0: (heads, rows, rows)

fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
axes[0].imshow(x_test[0], cmap="gray_r")
axes[0].set_title(f"digit {y_test[0]}")
for h, ax in enumerate(axes[1:]):
    ax.imshow(scores[h], cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"head {h}")
    ax.set_xlabel("key row")
axes[1].set_ylabel("query row")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# Through a stack of blocks, the weights of one layer do not say which
# *input* rows a position draws on: each layer mixes the previous layer's
# mixtures, and the residual connections carry every position through too.
# **Attention rollout** (Abnar and Zuidema, 2020),
# :func:`cdl.explain.attention_rollout`, averages the heads, adds the
# identity for the residual, renormalises the rows and multiplies through
# the layers. With one block it is the heads' mean, half-mixed with the
# identity; here is row 0 of the digit's rollout:
rollout = cdl.explain.attention_rollout(transformer, x_test[:1])
print("rollout of row 0 over the input rows:", rollout[0, 0].round(2))

# %%
# A character-level language model
# ---------------------------------
# A causal model predicts at every position the next token from those up to
# it. ``TransformerEncoder(causal=True)`` blocks in a ``Sequential`` make
# one: fed windows of text, with the same windows shifted by one character
# as targets, its logits have shape ``(batch, T, characters)`` and the
# cross-entropy averages over every position. The bundled excerpt of
# Shakespeare's Coriolanus (public domain,
# :func:`cdl.datasets.load_shakespeare`) becomes character ids with a
# :class:`cdl.text.TextVectorizer`; a short training already brings the
# validation **perplexity** (exp of the mean cross-entropy: how many
# characters the model hesitates between) well below the 63 of a uniform
# guess and the 28 of the characters' frequencies alone.
# ``examples/char_language_model.py`` trains longer.
corpus = datasets.load_shakespeare()
vectorizer = cdl.text.TextVectorizer(split="character", lowercase=False).adapt([corpus])
ids = vectorizer([corpus])[0]
split, CONTEXT = int(0.9 * len(ids)), 32


def windows(ids, count, seed):
    starts = np.random.default_rng(seed).integers(0, len(ids) - CONTEXT - 1, count)
    rows = ids[starts[:, None] + np.arange(CONTEXT + 1)]
    return rows[:, :-1], rows[:, 1:]                 # inputs, next characters


x_chars, y_chars = windows(ids[:split], 1000, seed=0)
x_val, y_val = windows(ids[split:], 300, seed=1)
characters = len(vectorizer.vocabulary())
language_model = cdl.Sequential([
    layers.Embedding(characters, 64),
    layers.PositionalEmbedding(max_length=CONTEXT),
    layers.TransformerEncoder(4, 128, dropout=0.0, norm_first=True, causal=True),
    layers.TransformerEncoder(4, 128, dropout=0.0, norm_first=True, causal=True),
    layers.LayerNorm(),
    layers.Dense(characters),
], input_shape=(CONTEXT,), seed=0, name="characters")
language_model.compile(optimizers.Adam(lr=3e-3), "cross_entropy", clip_norm=1.0)
language_model.fit(x_chars, y_chars, epochs=2, batch_size=32, verbose=0)
val_loss = language_model.evaluate(x_val, y_val)["loss"]
print(f"validation perplexity: {np.exp(val_loss):.1f}")

# %%
# :func:`cdl.text.generate` extends a prompt one sampled character at a
# time (``temperature`` below 1 sharpens the distribution; seeded). After
# this little training the model has learnt the look of the text (names in
# capitals followed by a colon, line breaks, letters in short groups) but
# hardly any words yet.
sample = cdl.text.generate(language_model, vectorizer(["MENENIUS:\n"])[0],
                           max_new_tokens=150, temperature=0.8, seed=0)
print(vectorizer.decode(sample[None])[0])

# %%
# Keeping the vocabulary with the model
# -------------------------------------
# The model reads ids, which mean nothing without the vectorizer that made
# them. Keep it in ``model.preprocessors``: ``model.save`` writes it into
# the model file (its settings in the header, its vocabulary as arrays
# beside the weights) and :func:`cdl.load_model` gives it back, checked as
# ``TextVectorizer.load`` checks a file of its own, so one file is all a
# program that generates text needs. (A vectorizer made with a split or
# standardize function is loaded with
# ``cdl.load_model(path, preprocessor_functions={"text": {"split": f}})``:
# a model file never holds code.)
import os
import tempfile

language_model.preprocessors["text"] = vectorizer
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "characters.cdl")
    language_model.save(path)
    restored = cdl.load_model(path)
characters_again = restored.preprocessors["text"]
print("same ids after loading:",
      np.array_equal(characters_again(["MENENIUS:\n"]), vectorizer(["MENENIUS:\n"])))

# %%
# Further
# -------
# :class:`~cdl.layers.TransformerDecoder` adds attention to an encoder's
# output (``mha([query, value])``, in a graph of ``cdl.Input``, see the
# functional API tutorial). For text, :mod:`cdl.text` turns strings into
# token ids for an ``Embedding`` layer and ``cdl.text.generate`` samples
# from a causal language model, as above.
