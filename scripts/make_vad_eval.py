"""Make the speech / non-speech evaluation set and the precision-guard check set of silero-vad.

Speech comes from the espeak-ng speech synthesizer (Debian/Ubuntu: ``apt-get install espeak-ng``):
16 short English sentences written for edgerun, each spoken by a different voice (en-us, en-gb,
en-gb-scotland, en-029 with the +f2/+f3/+m1/+m3 variants) at 140-180 words per minute. espeak-ng
writes 22050 Hz mono WAV; this script resamples it to 16 kHz with a Kaiser-windowed sinc
interpolator in numpy (scipy is not an edgerun dependency; the filter cuts off at 7.6 kHz, below the
new Nyquist frequency, so nothing aliases audibly).

Clips: `CLIPS` clips of `CLIP_FRAMES` x 512 samples (5.76 s each), two sentences per clip with seeded
random silence before, between and after them. The first two clips are clean; the others carry
seeded white or pink noise at 20, 10 and 5 dB SNR, where SNR is relative to the clean clip's mean
power over its speech frames (active speech level), so the labels stay those of the clean clip.

Labels, one per 512-sample frame (32 ms, the model's chunk): a frame is speech (1) when the CLEAN
signal's mean power in that frame is at most `THRESHOLD_DB` dB below the clip's speech level (the
90th percentile of its frame powers in dB); then gaps of at most `FILL_FRAMES` non-speech frames
between speech frames (pauses between words, plosive closures) are filled as speech, as VAD ground
truth usually does (a VAD is judged on utterances, not on 32 ms dips between words).

Written (deterministic for a given seed and espeak-ng version, recorded in the file):

- ``edgerun/models/silero-vad/eval/vad-eval.npz``: ``audio`` int16 [clips, samples] (16 kHz PCM,
  samples = frames x 512), ``labels`` uint8 [clips, frames], ``noise`` str [clips] (clean, white,
  pink), ``snr_db`` float32 [clips] (inf for clean), ``sample_rate`` int64, ``seed`` int64,
  ``espeak_version`` str;
- ``edgerun/models/silero-vad/check/check.npz``: `CHECK_WINDOWS` model inputs taken from the eval
  clips, half speech and half not by label: ``input`` float32 [N, 576] (64 context samples + 512
  new ones), ``state`` float32 [2, N, 128] (the state the FP32 model carried to that chunk when
  streaming the clip from its start), ``sr`` int64 scalar 16000;
- ``edgerun/models/silero-vad/calibration/calib.npz``: `CALIB_WINDOWS` INT8 calibration inputs laid
  out like the check set, drawn evenly over every clip's frames (speech and not, as they occur) with
  the check set's frames left out, so calibration and check never share a chunk;
- ``edgerun/models/silero-vad/check/streams.npz``: the guard's check streams (errors that compound
  through the state show only over a stream): `STREAM_CONDITIONS` further clips of `STREAM_FRAMES`
  x 512 samples, one sentence each from `STREAM_SENTENCES` (none of the eval set's) with its own seed
  (seed + 3), cut as the streaming protocol does: ``stream_input`` float32 [steps, streams, 576]
  (the last 64 samples of the previous chunk, zeros at the start, then 512 new ones); every stream
  starts from zero state, and ``sr`` comes from the card's constant.

    python scripts/make_vad_eval.py                      # (re)write all three files
    python scripts/make_vad_eval.py --calibration-only   # only calib.npz, from the eval set on disk
"""

from __future__ import annotations

import argparse
import io
import itertools
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parents[1] / "edgerun" / "models" / "silero-vad"
SEED = 2026
RATE = 16_000
CHUNK = 512
CONTEXT = 64
CLIPS = 8
CLIP_FRAMES = 180
THRESHOLD_DB = 30.0
FILL_FRAMES = 4
CHECK_WINDOWS = 32
CALIB_WINDOWS = 128
CONDITIONS: list[tuple[str, float]] = [
    ("clean", float("inf")),
    ("clean", float("inf")),
    ("white", 20.0),
    ("white", 10.0),
    ("white", 5.0),
    ("pink", 20.0),
    ("pink", 10.0),
    ("pink", 5.0),
]
SENTENCES = [
    "The train leaves at seven.",
    "Please close the window.",
    "We found the keys in the garden.",
    "Turn left after the bridge.",
    "My sister plays the violin.",
    "It will rain again tomorrow.",
    "Bring two cups of coffee.",
    "The meeting starts at noon.",
    "Edge devices run small models.",
    "She painted the door bright red.",
    "Call me when you get home.",
    "The battery is almost empty.",
    "Four birds sat on the fence.",
    "Read the first page aloud.",
    "Nobody heard the phone ring.",
    "Keep the receipt for later.",
]
STREAM_FRAMES = 80
STREAM_SENTENCES = ["Switch off the lights tonight.", "Where did you park the blue car?", "Open the door slowly."]
STREAM_VOICES = [("en-us+m3", 150), ("en-gb+f3", 165), ("en-029+m1", 175)]
STREAM_CONDITIONS: list[tuple[str, float]] = [("white", 10.0), ("pink", 5.0), ("pink", 15.0)]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-029", "en-us+m1", "en-gb-scotland", "en-gb+f2"]
SPEEDS = [140, 150, 160, 170, 180]


def espeak_version() -> str:
    """The version line of espeak-ng, without the data path it appends."""
    line = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    return line.split("  Data at")[0]


def synthesize(text: str, voice: str, speed: int) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float64 samples in [-1, 1] at `RATE`."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True
    )
    with wave.open(io.BytesIO(wav.stdout)) as reader:
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768
    return resample(samples, rate, RATE)


def resample(samples: np.ndarray, rate: int, target: int, taps: int = 32, beta: float = 8.0) -> np.ndarray:
    """Band-limited resampling: Kaiser-windowed sinc interpolation, cut off at 0.95 x the lower Nyquist."""
    if rate == target:
        return samples
    cutoff = 0.95 * min(rate, target) / rate  # in cycles per input sample x 2
    count = int(np.floor(len(samples) * target / rate))
    positions = np.arange(count) * (rate / target)
    base = np.floor(positions).astype(np.int64)
    offsets = np.arange(-taps + 1, taps + 1)
    index = base[:, None] + offsets[None, :]
    distance = positions[:, None] - index
    window = np.kaiser(2 * taps + 1, beta)
    weights = cutoff * np.sinc(cutoff * distance) * np.interp(distance, np.arange(-taps, taps + 1), window)
    padded = np.concatenate([np.zeros(taps), samples, np.zeros(taps + 1)])
    return np.asarray((padded[index + taps] * weights).sum(axis=1))


def frame_power_db(signal: np.ndarray) -> np.ndarray:
    frames = signal[: len(signal) // CHUNK * CHUNK].reshape(-1, CHUNK)
    return np.asarray(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12))


def frame_labels(clean: np.ndarray) -> np.ndarray:
    """The module docstring's rule: power within `THRESHOLD_DB` of the speech level, short gaps filled."""
    power = frame_power_db(clean)
    level = np.percentile(power, 90)
    speech = power >= level - THRESHOLD_DB
    where = np.flatnonzero(speech)
    for left, right in itertools.pairwise(where):
        if 1 < right - left <= FILL_FRAMES + 1:
            speech[left + 1 : right] = True
    return speech.astype(np.uint8)


def noise(kind: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white or pink (1/f power) noise."""
    white = rng.standard_normal(count)
    if kind == "pink":
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(count)
        freqs[0] = freqs[1]
        white = np.fft.irfft(spectrum / np.sqrt(freqs), n=count)
    return np.asarray(white / np.sqrt(np.mean(white**2)))


def make_clips(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    length = CLIP_FRAMES * CHUNK
    audio = np.zeros((CLIPS, length), np.int16)
    labels = np.zeros((CLIPS, CLIP_FRAMES), np.uint8)
    for clip, (kind, snr) in enumerate(CONDITIONS):
        parts = []
        for i in (2 * clip, 2 * clip + 1):
            voice, speed = VOICES[i % len(VOICES)], SPEEDS[(i * 3) % len(SPEEDS)]
            speech = synthesize(SENTENCES[i], voice, speed)
            speech = speech / np.max(np.abs(speech)) * rng.uniform(0.3, 0.7)
            parts += [np.zeros(int(rng.uniform(0.2, 0.7) * RATE)), speech]
        clean = np.concatenate(parts)
        if len(clean) > length:
            raise SystemExit(f"clip {clip}: {len(clean) / RATE:.2f} s of speech does not fit {length / RATE:.2f} s")
        clean = np.concatenate([clean, np.zeros(length - len(clean))])
        labels[clip] = frame_labels(clean)
        noisy = clean
        if kind != "clean":
            speech_frames = clean.reshape(-1, CHUNK)[labels[clip] == 1]
            level = np.mean(speech_frames**2)
            noisy = clean + noise(kind, length, rng) * np.sqrt(level / 10 ** (snr / 10))
        audio[clip] = np.clip(np.round(noisy * 32767), -32768, 32767).astype(np.int16)
    return audio, labels


def stream_states(session: object, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [frames, 576] and the state [frames, 2, 128] the model sees at each chunk of ``clip``."""
    samples = clip.astype(np.float32) / 32768
    context = np.zeros(CONTEXT, np.float32)
    state = np.zeros((2, 1, 128), np.float32)
    windows, states = [], []
    for start in range(0, len(samples), CHUNK):
        window = np.concatenate([context, samples[start : start + CHUNK]])
        windows.append(window)
        states.append(state[:, 0])
        feeds = {"input": window[None], "state": state, "sr": np.array(RATE, np.int64)}
        _, state = session.run(None, feeds)  # type: ignore[attr-defined]
        context = window[-CONTEXT:]
    return np.stack(windows), np.stack(states)


def make_streams(rng: np.random.Generator) -> np.ndarray:
    """``stream_input`` [steps, streams, 576]: the check streams' clips, chunked with their context."""
    length = STREAM_FRAMES * CHUNK
    chunks = []
    for text, (voice, speed), (kind, snr) in zip(STREAM_SENTENCES, STREAM_VOICES, STREAM_CONDITIONS, strict=True):
        speech = synthesize(text, voice, speed)
        speech = speech / np.max(np.abs(speech)) * rng.uniform(0.3, 0.7)
        clean = np.concatenate([np.zeros(int(rng.uniform(0.2, 0.5) * RATE)), speech])
        if len(clean) > length:
            raise SystemExit(f"stream '{text}': {len(clean) / RATE:.2f} s does not fit {length / RATE:.2f} s")
        clean = np.concatenate([clean, np.zeros(length - len(clean))])
        labels = frame_labels(clean)
        level = np.mean(clean.reshape(-1, CHUNK)[labels == 1] ** 2)
        noisy = clean + noise(kind, length, rng) * np.sqrt(level / 10 ** (snr / 10))
        samples = np.clip(np.round(noisy * 32767), -32768, 32767).astype(np.int16).astype(np.float32) / 32768
        frames = samples.reshape(STREAM_FRAMES, CHUNK)
        context = np.concatenate([np.zeros((1, CONTEXT), np.float32), frames[:-1, -CONTEXT:]])
        chunks.append(np.concatenate([context, frames], axis=1))
    return np.stack(chunks, axis=1).astype(np.float32)


def write_streams(seed: int) -> None:
    """``check/streams.npz``: the guard's check streams (module doc), from their own seed."""
    streams = make_streams(np.random.default_rng(seed + 3))
    path = FOLDER / "check" / "streams.npz"
    np.savez_compressed(path, stream_input=streams)
    print(f"wrote {path} ({path.stat().st_size} bytes): stream_input {list(streams.shape)}")


def check_picks(labels: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(clip, frame) of the check windows: half speech, half not, by label."""
    picks: list[tuple[int, int]] = []
    for value in (1, 0):
        where = np.argwhere(labels == value)
        chosen = rng.choice(len(where), size=CHECK_WINDOWS // 2, replace=False)
        picks += [(int(c), int(f)) for c, f in where[np.sort(chosen)]]
    return sorted(picks)


def calibration_picks(
    labels: np.ndarray, exclude: list[tuple[int, int]], rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(clip, frame) of the calibration windows: the same number from every clip, none of ``exclude``."""
    taken = set(exclude)
    picks: list[tuple[int, int]] = []
    for clip in range(labels.shape[0]):
        free = [f for f in range(labels.shape[1]) if (clip, f) not in taken]
        chosen = rng.choice(len(free), size=CALIB_WINDOWS // labels.shape[0], replace=False)
        picks += [(clip, free[i]) for i in np.sort(chosen)]
    return picks


def windows_at(audio: np.ndarray, picks: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Model inputs at ``picks``, each with its context and the state the FP32 model carried to it."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(FOLDER / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs, states = [], []
    for clip in sorted({c for c, _ in picks}):
        windows, carried = stream_states(session, audio[clip])
        for c, f in picks:
            if c == clip:
                inputs.append(windows[f])
                states.append(carried[f])
    return {
        "input": np.stack(inputs).astype(np.float32),
        "state": np.stack(states, axis=1).astype(np.float32),
        "sr": np.array(RATE, np.int64),
    }


def make_check(audio: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return windows_at(audio, check_picks(labels, rng))


def write_calibration(audio: np.ndarray, labels: np.ndarray, seed: int) -> None:
    """``calibration/calib.npz``: windows disjoint from the check set's (drawn again with its seed)."""
    excluded = check_picks(labels, np.random.default_rng(seed + 1))
    picks = calibration_picks(labels, excluded, np.random.default_rng(seed + 2))
    assert not set(picks) & set(excluded)
    calib = windows_at(audio, picks)
    path = FOLDER / "calibration" / "calib.npz"
    path.parent.mkdir(exist_ok=True)
    np.savez_compressed(path, **calib)
    share = float(np.mean([labels[c, f] for c, f in picks]))
    print(f"wrote {path} ({path.stat().st_size} bytes): input {list(calib['input'].shape)}, speech share {share:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--calibration-only", action="store_true", help="write only calib.npz from the eval set")
    args = parser.parse_args()
    if args.calibration_only:
        with np.load(FOLDER / "eval" / "vad-eval.npz") as found:
            write_calibration(found["audio"], found["labels"], int(found["seed"]))
        return 0
    rng = np.random.default_rng(args.seed)
    version = espeak_version()
    audio, labels = make_clips(rng)
    eval_path = FOLDER / "eval" / "vad-eval.npz"
    np.savez_compressed(
        eval_path,
        audio=audio,
        labels=labels,
        noise=np.array([kind for kind, _ in CONDITIONS]),
        snr_db=np.array([snr for _, snr in CONDITIONS], np.float32),
        sample_rate=np.array(RATE, np.int64),
        seed=np.array(args.seed, np.int64),
        espeak_version=np.array(version),
    )
    print(f"wrote {eval_path} ({eval_path.stat().st_size} bytes): {audio.shape[0]} clips x {audio.shape[1]} samples,")
    print(f"  {labels.size} frames, speech share {labels.mean():.3f}; {version}")
    check = make_check(audio, labels, np.random.default_rng(args.seed + 1))
    check_path = FOLDER / "check" / "check.npz"
    np.savez_compressed(check_path, **check)
    print(f"wrote {check_path} ({check_path.stat().st_size} bytes): input {list(check['input'].shape)}")
    write_calibration(audio, labels, args.seed)
    write_streams(args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
