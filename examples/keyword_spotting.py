"""Keyword spotting on generated audio: a small Conv1D + GRU model tells
spoken-like "words" apart from their log-mel spectrograms.

Each word is a sequence of tones and chirps (its own pitch contour), said
at a random speed, pitch and place in a half-second clip, with noise; the
last class is background noise alone. The features are log-mel energies
computed with SciPy's short-time Fourier transform, so the model reads a
sequence of spectral frames, as a speech model does.

Run: python examples/keyword_spotting.py
"""
import numpy as np
from scipy import signal

import cdl
from cdl import data, layers, optimizers

RATE = 8000            # samples per second
CLIP = RATE // 2       # half-second clips
N_MELS = 24
# Each word: (start Hz, end Hz, seconds) segments, a tone when start == end.
WORDS = {
    "up": [(400, 900, 0.12), (900, 900, 0.08)],
    "down": [(900, 400, 0.12), (400, 400, 0.08)],
    "left": [(600, 600, 0.07), (1400, 1400, 0.07), (600, 600, 0.07)],
    "right": [(1400, 1400, 0.07), (600, 600, 0.07), (1400, 1400, 0.07)],
    "stop": [(300, 2000, 0.18)],
}
CLASSES = list(WORDS) + ["noise"]


def say(word, rng):
    """One utterance of ``word``: its segments at a random speed and pitch,
    with a smooth loudness envelope."""
    speed, pitch = rng.uniform(0.8, 1.25), rng.uniform(0.85, 1.15)
    parts, phase = [], rng.uniform(0, 2 * np.pi)
    for start, end, seconds in WORDS[word]:
        n = int(seconds * speed * RATE)
        freq = pitch * np.linspace(start, end, n)
        angle = phase + 2 * np.pi * np.cumsum(freq) / RATE
        phase = angle[-1]
        # A second harmonic, as voiced sounds have.
        parts.append(np.sin(angle) + 0.4 * np.sin(2 * angle))
    wave = np.concatenate(parts)
    return wave * np.hanning(len(wave)) ** 0.5


def make_clips(n, seed=0):
    """``n`` clips (samples, CLIP) and their class labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    clips = rng.normal(0, 1, (n, CLIP)) * rng.uniform(0.2, 0.6, (n, 1))
    for i, label in enumerate(labels):
        if CLASSES[label] != "noise":
            wave = say(CLASSES[label], rng) * rng.uniform(0.6, 1.4)
            start = rng.integers(0, CLIP - len(wave))
            clips[i, start:start + len(wave)] += wave
    return clips, labels


def mel_filters(n_fft_bins, n_mels=N_MELS, low=100.0, high=RATE / 2):
    """Triangular filters equally spaced on the mel scale, (n_mels, bins)."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def to_hz(mel):
        return 700.0 * (10 ** (mel / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(low), to_mel(high), n_mels + 2))
    bins = np.linspace(0, RATE / 2, n_fft_bins)
    filters = np.zeros((n_mels, n_fft_bins))
    for m in range(n_mels):
        left, centre, right = edges[m:m + 3]
        rising = (bins - left) / (centre - left)
        falling = (right - bins) / (right - centre)
        filters[m] = np.clip(np.minimum(rising, falling), 0, None)
    return filters


def log_mel(clips):
    """Log-mel energies (samples, frames, N_MELS) from SciPy's STFT."""
    _, _, spectrum = signal.stft(clips, fs=RATE, nperseg=256, noverlap=128, axis=-1)
    power = np.abs(spectrum) ** 2                      # (samples, bins, frames)
    mel = np.matmul(mel_filters(power.shape[1]), power).transpose(0, 2, 1)
    features = np.log(mel + 1e-6)
    # Standardised per band, with statistics of the whole set.
    return ((features - features.mean(axis=(0, 1))) / features.std(axis=(0, 1))).astype(
        np.float32)


clips, labels = make_clips(1200)
x = log_mel(clips)
x_train, x_test, y_train, y_test = data.train_test_split(x, labels, test_size=0.25, seed=0)
frames = x.shape[1]

model = cdl.Sequential([
    layers.Conv1D(24, 3, padding="same", activation="relu"),
    layers.MaxPool1D(2),
    layers.GRU(32),
    layers.Dense(len(CLASSES)),
], input_shape=(frames, N_MELS), seed=0, name="keywords")
model.compile(optimizers.Adam(lr=3e-3), "cross_entropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=8, batch_size=64, verbose=0)
accuracy = model.evaluate(x_test, y_test)["accuracy"]
print(f"log-mel features: {frames} frames x {N_MELS} mel bands per clip")
print(f"test accuracy: {accuracy:.4f} on {len(CLASSES)} classes ({', '.join(CLASSES)})")
