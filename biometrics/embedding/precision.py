"""The runtime and number format the embedding network runs in (BIOMETRICS_INFERENCE_PRECISION).

Only SpeechBrain's ``embedding_model`` (the ECAPA-TDNN proper) is changed; the Fbank
features and their sentence normalisation stay in fp32 torch, in front of it, because
they are cheap and their log-mel arithmetic is where a coarser format would lose most.
Each variant replaces ``model.mods.embedding_model`` with a module of the same call
signature ``(features, relative_lengths) -> (batch, 1, dim)``, so ``encode_batch`` runs
as before and nothing else in the service knows.

Variants that were measured and are not offered (docs/performance.md, "Precision and
runtimes"): dynamic int8 (``quantize_dynamic`` converts Linear and recurrent layers only,
and the ECAPA-TDNN has none: all 38 of its weight layers are Conv1d, so nothing would be
quantised), and ``torch.compile`` (inductor had not finished compiling the bundled model
after six minutes, twice, on the shared 2-CPU box it was tried on).
"""

from __future__ import annotations

import enum
import logging

import torch
from speechbrain.inference.speaker import SpeakerRecognition

from biometrics.errors import ModelLoadError

logger = logging.getLogger(__name__)


class Precision(enum.StrEnum):
    FP32 = "fp32"  # eager fp32 torch, SpeechBrain as shipped
    BF16 = "bf16"  # eager torch under bf16 autocast (AMX/AVX512-BF16 matmuls)
    ONNX = "onnx"  # exported to ONNX, run by onnxruntime's CPU provider, fp32


PRECISIONS = tuple(precision.value for precision in Precision)


def parse_precision(text: str) -> Precision:
    """The precision named by ``text``, or :class:`ModelLoadError` listing the choices."""
    try:
        return Precision(text)
    except ValueError:
        raise ModelLoadError(
            f"unknown inference precision {text!r}: choose one of {', '.join(PRECISIONS)} "
            "(BIOMETRICS_INFERENCE_PRECISION)"
        ) from None


def apply_precision(model: SpeakerRecognition, precision: Precision, *, threads: int) -> None:
    """Make ``model`` embed in ``precision``, in place; raises :class:`ModelLoadError` when
    the runtime is missing or the network cannot be converted."""
    if precision is Precision.FP32:
        return
    network: torch.nn.Module = model.mods.embedding_model
    if precision is Precision.BF16:
        converted: torch.nn.Module = _Autocast(network)
    else:
        converted = _OnnxNetwork(network, threads=threads)
    model.mods.embedding_model = converted
    logger.info("inference precision applied", extra={"precision": precision.value})


class _Autocast(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            embeddings: torch.Tensor = self.network(features, lengths)
        return embeddings.float()


class _OnnxNetwork(torch.nn.Module):
    """The network exported once (batch and time axes dynamic) and run by onnxruntime."""

    def __init__(self, network: torch.nn.Module, *, threads: int) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise ModelLoadError(
                "inference precision onnx needs onnxruntime: pip install 'biometrics[onnx]' "
                "or set BIOMETRICS_INFERENCE_PRECISION=fp32"
            ) from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            exported = _export(network)
            self.session = onnxruntime.InferenceSession(
                exported, options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise ModelLoadError(
                f"could not export the model to ONNX ({type(error).__name__}: {error}); "
                "set BIOMETRICS_INFERENCE_PRECISION=fp32"
            ) from error

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        (embeddings,) = self.session.run(
            None,
            {
                "features": features.float().contiguous().numpy(),
                "lengths": lengths.float().contiguous().numpy(),
            },
        )
        return torch.from_numpy(embeddings)


def _export(network: torch.nn.Module) -> bytes:
    # Two rows of different lengths, so that the traced graph keeps the masking of padding.
    features = torch.randn(2, 300, network_input_size(network))
    lengths = torch.tensor([1.0, 0.5])
    # torch.export (strict) first, with the batch and time axes symbolic: the TorchScript
    # exporter bakes the example's batch size into the padding masks (length_to_mask) and
    # then fails at any other size. Below 5 frames the network's convolutions have no output,
    # so that is the shortest input the graph takes (50 ms; a verdict needs seconds).
    batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames", min=5)
    program = torch.export.export(
        network.eval(),
        (features, lengths),
        dynamic_shapes=({0: batch, 1: frames}, {0: batch}),
        strict=True,
    )
    # optimize=False: onnxruntime optimises the graph itself when the session starts.
    exported = torch.onnx.export(
        program,
        (features, lengths),
        input_names=["features", "lengths"],
        output_names=["embeddings"],
        dynamo=True,
        optimize=False,
        verbose=False,
    )
    if exported is None:  # only a legacy export to a file returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    serialised: bytes = exported.model_proto.SerializeToString()
    return serialised


def network_input_size(network: torch.nn.Module) -> int:
    """The feature size (mel bands) the network's first convolution takes."""
    first = next(module for module in network.modules() if isinstance(module, torch.nn.Conv1d))
    return int(first.in_channels)
