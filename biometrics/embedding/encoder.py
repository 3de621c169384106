"""Load an ECAPA-TDNN through SpeechBrain's own path and turn speech into embeddings.

A *source* is a Hugging Face id (fetched into the model cache) or a local
folder in the spkrec-ecapa-voxceleb layout. A local folder is read in place
with the network disabled: its hyperparams.yaml may still name the hub in
``pretrained_path``, so that key is pointed at the folder itself.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from speechbrain.inference.speaker import SpeakerRecognition
from speechbrain.utils.fetching import FetchConfig, LocalStrategy

from biometrics.audio.decode import Samples
from biometrics.embedding.folder import (
    EMBEDDING_CHECKPOINT,
    HYPERPARAMS,
    MODEL_FILES,
    missing_files,
)
from biometrics.embedding.identity import ModelIdentity
from biometrics.embedding.pooling import Vectors
from biometrics.embedding.precision import apply_precision, parse_precision
from biometrics.errors import ModelLoadError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# The model that ships inside the package, for machines without internet access.
BUNDLED_SOURCE = "bundled"
BUNDLED_NAME = "bundled:ecapa-distilled"
BUNDLED_FOLDER = Path(__file__).resolve().parents[1] / "models" / "ecapa-distilled"
BUNDLED_NOTICE = (
    "the bundled offline model, for evaluation, tests and machines without internet; "
    "use speechbrain/spkrec-ecapa-voxceleb in production"
)


class SpeakerEncoder:
    """A loaded model: waveforms in, L2-normalised embeddings out. Blocking; call it
    from a worker thread, never from the event loop."""

    def __init__(self, model: SpeakerRecognition, identity: ModelIdentity, folder: Path) -> None:
        self._model = model.eval()
        self.identity = identity
        self.folder = folder  # the model's files (for a hub model, its cached copy)
        self.dimension = int(self.embed([np.zeros(16_000, dtype=np.float32)]).shape[1])

    @torch.inference_mode()
    def embed(self, waveforms: Sequence[Samples]) -> Vectors:
        """Embed 16 kHz mono waveforms in one padded batch; returns (n, dim) float32."""
        if not waveforms:
            raise ValueError("nothing to embed")
        longest = max(len(wave) for wave in waveforms)
        batch = torch.zeros(len(waveforms), longest)
        for row, wave in enumerate(waveforms):
            batch[row, : len(wave)] = torch.from_numpy(np.asarray(wave, dtype=np.float32))
        lengths = torch.tensor([len(wave) / longest for wave in waveforms])
        # SpeechBrain's own verification compares un-normalised embeddings by cosine.
        embeddings = self._model.encode_batch(batch, lengths, normalize=False).squeeze(1)
        embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
        return embeddings.numpy().astype(np.float32)


def load_encoder(
    source: str, cache_dir: Path, *, threads: int = 2, precision: str = "fp32"
) -> SpeakerEncoder:
    """Load the model named by ``source`` to run in ``precision`` (see precision.py), or
    raise :class:`ModelLoadError` saying why."""
    chosen = parse_precision(precision)
    torch.set_num_threads(threads)
    _one_interop_thread()
    folder = Path(source).expanduser()
    notice = None
    if source == BUNDLED_SOURCE:
        if not BUNDLED_FOLDER.is_dir():
            raise ModelLoadError(
                f"the bundled model is missing from this installation ({BUNDLED_FOLDER}); "
                "reinstall the package, or set BIOMETRICS_MODEL_SOURCE to a model folder"
            )
        model, checkpoint = _load_folder(BUNDLED_FOLDER)
        identity_source, notice = BUNDLED_NAME, BUNDLED_NOTICE
        logger.warning(BUNDLED_NOTICE)
    elif folder.is_dir():
        model, checkpoint = _load_folder(folder.resolve())
        identity_source = str(folder.resolve())
    elif _HUB_ID.match(source) and not source.startswith((".", "~")):
        model, checkpoint = _load_hub(source, cache_dir)
        identity_source = source
    else:
        raise ModelLoadError(
            f"model source {source!r} is neither an existing folder nor a Hugging Face id "
            f"(owner/name) nor {BUNDLED_SOURCE!r}; set BIOMETRICS_MODEL_SOURCE to a folder holding "
            + ", ".join(MODEL_FILES)
        )
    # Every offered precision keeps embeddings within cosine 0.999 of fp32, so voiceprints
    # stay comparable and the identity (the checkpoint's hash) does not change with it.
    apply_precision(model, chosen, threads=threads)
    identity = ModelIdentity.of_checkpoint(identity_source, checkpoint, notice)
    logger.info("model loaded", extra={"model": identity.name})
    return SpeakerEncoder(model, identity, checkpoint.parent)


def _one_interop_thread() -> None:
    """One inference thread runs one batch at a time, so torch's pool for running
    operators side by side would only compete with the intra-op threads. Torch takes
    this once per process, before its first parallel work; later calls keep it."""
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # already fixed by earlier work
            torch.set_num_interop_threads(1)


def _load_folder(folder: Path) -> tuple[SpeakerRecognition, Path]:
    missing = missing_files(folder)
    if missing:
        raise ModelLoadError(
            f"model folder {folder} lacks {', '.join(missing)}; a model folder holds "
            f"{', '.join(MODEL_FILES)} (the spkrec-ecapa-voxceleb layout)"
        )
    hyperparams = (folder / HYPERPARAMS).read_text(encoding="utf-8")
    overrides = {"pretrained_path": str(folder)} if _has_key(hyperparams, "pretrained_path") else {}
    try:
        model = SpeakerRecognition.from_hparams(
            source=str(folder),
            overrides=overrides,
            savedir=None,
            local_strategy=LocalStrategy.NO_LINK,
            fetch_config=FetchConfig(allow_network=False),
            run_opts={"device": "cpu"},
        )
    except Exception as error:
        raise ModelLoadError(
            f"could not load the model folder {folder}: {type(error).__name__}: {error}"
        ) from error
    return model, folder / EMBEDDING_CHECKPOINT


def _load_hub(source: str, cache_dir: Path) -> tuple[SpeakerRecognition, Path]:
    savedir = cache_dir / source.replace("/", "--")
    try:
        model = SpeakerRecognition.from_hparams(
            source=source, savedir=str(savedir), run_opts={"device": "cpu"}
        )
    except Exception as error:
        raise ModelLoadError(
            f"could not load model source {source!r} from the Hugging Face hub "
            f"({type(error).__name__}: {error}). Without internet access, copy the model's "
            f"files ({', '.join(MODEL_FILES)}) into a folder and set "
            "BIOMETRICS_MODEL_SOURCE=/path/to/that/folder"
        ) from error
    return model, savedir / EMBEDDING_CHECKPOINT


def _has_key(yaml_text: str, key: str) -> bool:
    return re.search(rf"^{re.escape(key)}\s*:", yaml_text, flags=re.MULTILINE) is not None
