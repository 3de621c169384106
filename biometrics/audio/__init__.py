"""Audio in: decode files and raw PCM to 16 kHz mono float32, cut it into 20 ms frames, find
the speech in it and measure its quality, for uploads and live streams alike."""

from biometrics.audio.decode import SAMPLE_RATE, AudioFormat, decode_audio, decode_pcm
from biometrics.audio.speech import DetectedSpeech, SpeechDetector, SpeechSegments, detect_speech

__all__ = [
    "SAMPLE_RATE",
    "AudioFormat",
    "DetectedSpeech",
    "SpeechDetector",
    "SpeechSegments",
    "decode_audio",
    "decode_pcm",
    "detect_speech",
]
