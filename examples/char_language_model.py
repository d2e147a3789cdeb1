"""A character-level Transformer language model on an excerpt of Shakespeare.

The text (Coriolanus, public domain, bundled: ``datasets.load_shakespeare``)
becomes character ids with a ``TextVectorizer``; its first 90% trains the
model and the last 10% validates it. The model reads windows of ``--context``
characters and predicts, at every position, the next character: an
embedding, a learned positional embedding, ``--blocks`` causal
``TransformerEncoder`` blocks (each position attends only to itself and the
positions before it) and a dense layer to one logit per character, trained
with the cross-entropy of every position. It reports the validation
perplexity, exp(mean cross-entropy per character): the number of characters
the model hesitates between: 63 for a uniform guess, 28 for a guess from
the characters' frequencies alone. Then ``cdl.text.generate`` samples a continuation of a
prompt. The defaults are quick (under a minute of CPU, for a validation
perplexity near 9); more epochs, windows and blocks give lower perplexity
and better-formed words.

The vectorizer is kept in ``model.preprocessors``, so that ``--save PATH``
writes one file holding the model and its characters:
``cdl.load_model(PATH).preprocessors["text"]`` turns a prompt into ids again.

Run: python examples/char_language_model.py [--epochs 3] [--windows 2500] [--context 32]
     [--save char_lm.cdl]
"""
import argparse
import time

import numpy as np

import cdl
from cdl import datasets, layers, losses, optimizers, text


def windows(ids, count, length, rng):
    """``count`` random windows of ``length + 1`` ids: inputs and next-character targets."""
    starts = rng.integers(0, len(ids) - length - 1, count)
    rows = ids[starts[:, None] + np.arange(length + 1)]
    return rows[:, :-1], rows[:, 1:]


def perplexity(model, x, y, batch_size=256):
    """exp of the mean cross-entropy per predicted character."""
    loss = losses.CrossEntropy()
    total = sum(loss(model(x[i:i + batch_size]), y[i:i + batch_size]) * len(x[i:i + batch_size])
                for i in range(0, len(x), batch_size))
    return float(np.exp(total / len(x)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--windows", type=int, default=2500, help="training windows")
    parser.add_argument("--context", type=int, default=32, help="characters per window")
    parser.add_argument("--blocks", type=int, default=2, help="Transformer blocks")
    parser.add_argument("--width", type=int, default=64, help="d_model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH",
                        help="save the trained model, with its vectorizer, to PATH")
    args = parser.parse_args()

    corpus = datasets.load_shakespeare()
    vectorizer = text.TextVectorizer(split="character", lowercase=False).adapt([corpus])
    vocabulary = len(vectorizer.vocabulary())          # the characters, padding and unknown
    ids = vectorizer([corpus])[0]
    split = int(0.9 * len(ids))
    rng = np.random.default_rng(args.seed)
    x_train, y_train = windows(ids[:split], args.windows, args.context, rng)
    x_val, y_val = windows(ids[split:], 500, args.context, rng)
    print(f"{len(corpus)} characters, {vocabulary} ids; {len(x_train)} training windows of "
          f"{args.context}")

    model = cdl.Sequential(
        [layers.Embedding(vocabulary, args.width),
         layers.PositionalEmbedding(max_length=args.context)]
        + [layers.TransformerEncoder(num_heads=4, dim_feedforward=2 * args.width,
                                     dropout=0.0, norm_first=True, causal=True)
           for _ in range(args.blocks)]
        + [layers.LayerNorm(), layers.Dense(vocabulary)],
        input_shape=(args.context,), seed=args.seed, name="char_transformer")
    model.preprocessors["text"] = vectorizer          # saved in the model file with the weights
    # Logits (batch, context, vocabulary) against targets (batch, context):
    # the cross-entropy averages over every position of every window.
    model.compile(optimizers.Adam(lr=3e-3), "cross_entropy", clip_norm=1.0)
    print(f"validation perplexity before training: {perplexity(model, x_val, y_val):.2f}")
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
    seconds = time.perf_counter() - start
    print(f"validation perplexity: {perplexity(model, x_val, y_val):.2f} "
          f"({model.count_params()} weights, {args.epochs} epochs in {seconds:.1f} s)")

    prompt = "MENENIUS:\n"
    prompt_ids = vectorizer([prompt])[0]
    sample = text.generate(model, prompt_ids, max_new_tokens=200, temperature=0.8,
                           seed=args.seed)
    print("sample:")
    print(vectorizer.decode(sample[None])[0])
    if args.save:
        model.save(args.save)
        print(f"saved the model and its vectorizer to {args.save}")


if __name__ == "__main__":
    main()
