"""The generation backends by name. Each is imported only when chosen, so the CLI lists them without loading
torch. Adding one: a module with a class implementing `ume.generation.GenerationBackend` (constructed as
`cls(backbone, **options)`), and its entry here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendEntry:
    module: str
    cls: str
    summary: str  # what `--backend` help says of it


BACKENDS: dict[str, BackendEntry] = {
    "hf": BackendEntry("ume.decode", "HFBackend", "ume's continuous-batching decoder over the stock model"),
    "vllm": BackendEntry("ume.generation_vllm", "VLLMBackend", "vLLM writes the reasoning (GPU)"),
}
