"""Audio in: decode files and raw PCM to 16 kHz mono float32, and find the speech in it."""

from biometrics.audio.decode import SAMPLE_RATE, AudioFormat, decode_audio, decode_pcm
from biometrics.audio.speech import SpeechDetector, SpeechSegments

__all__ = [
    "SAMPLE_RATE",
    "AudioFormat",
    "SpeechDetector",
    "SpeechSegments",
    "decode_audio",
    "decode_pcm",
]
