"""`ume serve`: an OpenAI-compatible embeddings server over `Encoder.encode`.

    from ume.serve import ServeConfig, create_app, ServerThread
    with ServerThread(create_app(ServeConfig(model="models/ume-demo-rl"))) as url:
        ...  # OpenAI(base_url=url + "/v1", api_key="-").embeddings.create(model="ume-demo-rl", input="hi")

Imports of fastapi / uvicorn happen on first use, so `import ume.serve` stays cheap.
"""

from __future__ import annotations

from typing import Any

from ume.serve.limits import LimitError, RequestError, ServeConfig, ServeLimits

__all__ = ["LimitError", "RequestError", "ServeConfig", "ServeLimits", "ServerThread", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ume.serve.app import create_app

        return create_app
    if name == "ServerThread":
        from ume.serve.runner import ServerThread

        return ServerThread
    raise AttributeError(f"module 'ume.serve' has no attribute {name!r}")
