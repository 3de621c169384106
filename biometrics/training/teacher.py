"""The teacher: Resemblyzer's pretrained GE2E speaker encoder (Apache-2.0; its
weights ship inside the package), batched over crops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from biometrics.audio.decode import Samples
from biometrics.embedding.pooling import Vectors

PARTIAL_FRAMES = 160  # Resemblyzer's 1.6 s partial utterances


class ResemblyzerTeacher:
    dimension = 256

    def __init__(self, device: str = "cpu") -> None:
        try:
            from resemblyzer import VoiceEncoder, audio
        except ImportError as error:  # pragma: no cover - depends on the extras
            raise RuntimeError(
                "the teacher needs resemblyzer: pip install -e '.[train]' && "
                "pip install --no-deps resemblyzer==0.1.4"
            ) from error
        self._device = torch.device(device)
        self._encoder = VoiceEncoder(self._device, verbose=False)
        self._mel = audio.wav_to_mel_spectrogram

    @torch.inference_mode()
    def embed(self, crops: Sequence[Samples] | npt.NDArray[np.float32]) -> Vectors:
        """Unit embeddings: the mean of the first and last 1.6 s partials of each crop
        (one partial when the crop is shorter), as Resemblyzer pools partials."""
        partials: list[npt.NDArray[np.float32]] = []
        owners: list[int] = []
        for index, crop in enumerate(crops):
            mel = self._mel(np.asarray(crop, dtype=np.float32))
            if len(mel) < PARTIAL_FRAMES:
                mel = np.pad(mel, ((0, PARTIAL_FRAMES - len(mel)), (0, 0)))
            starts = sorted({0, len(mel) - PARTIAL_FRAMES})
            for start in starts:
                partials.append(mel[start : start + PARTIAL_FRAMES])
                owners.append(index)
        batch = torch.from_numpy(np.stack(partials)).to(self._device)
        outputs: npt.NDArray[np.float32] = self._encoder(batch).cpu().numpy()
        pooled = np.zeros((len(crops), outputs.shape[1]), dtype=np.float64)
        np.add.at(pooled, np.array(owners), outputs)
        norms: npt.NDArray[np.float64] = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / norms).astype(np.float32)

    def embed_utterance(self, speech: Samples) -> Vectors:
        """Resemblyzer's own utterance embedding (sliding partials), for evaluation."""
        return np.asarray(self._encoder.embed_utterance(speech), dtype=np.float32)
