"""`ume serve` with the stock `openai` client against a server on 127.0.0.1: inputs, modes, every limit,
media policy, auth, batching, queue and timeout. One shared server per module; gated ones where a test must
hold the worker still (queue full, timeout, merging)."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

import ume  # noqa: E402
from ume.serve import ServeConfig, ServeLimits, ServerThread, create_app  # noqa: E402
from ume.serve.app import item_seed, supports_both  # noqa: E402
from ume.serve.limits import RequestError  # noqa: E402
from ume.serve.protocol import parse_request  # noqa: E402

try:  # the HTTP client the openai package ships with (httpx2 for openai 3.x, httpx before)
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

DEMO = Path(__file__).resolve().parents[1] / "models" / "ume-demo-rl"
DIM = json.loads((DEMO / "config.json").read_text())["text_config"]["hidden_size"]  # the shipped vector size
KEY = "test-key"
LIMITS = ServeLimits(max_body_bytes=300_000, max_items=4, max_text_chars=500, max_image_pixels=200 * 200,
                     max_frames=8, max_new_tokens=24, max_num_samples=2, request_timeout_s=60)


def png(colour=(220, 30, 30), size=(64, 64)) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def huge_header_png(w: int = 30000, h: int = 30000) -> bytes:
    """A few hundred bytes whose header declares w x h pixels: the classic decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def text_bomb_png() -> bytes:
    """A valid 8x8 PNG whose zTXt chunk inflates past PIL's cap: undecodable, a per-item error."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("bomb", "a" * 3_000_000, zip=True)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def close(got, want, tol=1e-4) -> None:
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < tol, np.abs(got - want).max()


@pytest.fixture(scope="module")
def enc():
    return ume.load(DEMO, device="cpu")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-media")
    (root / "red.png").write_bytes(png())
    (root / "sub").mkdir()
    (root / "sub" / "blue.png").write_bytes(png((30, 60, 220)))
    (root.parent / "outside.png").write_bytes(png())
    return root


@pytest.fixture(scope="module")
def server(enc, media_dir):
    cfg = ServeConfig(model=str(DEMO), limits=LIMITS, api_key=KEY, allow_local_media=media_dir, batch_size=8,
                      truncate_dims=(64,))
    with ServerThread(create_app(cfg, enc)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


def post(client, body):
    """A raw POST through the openai client (for the chat form and ume's extensions)."""
    return client.post("/embeddings", body=body, cast_to=object)


def error_of(excinfo) -> dict:
    return excinfo.value.body if isinstance(excinfo.value.body, dict) else excinfo.value.response.json()["error"]


# --- the OpenAI surface --------------------------------------------------------------------------------
def test_text_float_and_base64_match_encoder(client, enc):
    texts = ["a red circle", "a blue square moving left"]
    want = enc.encode(texts, mode="disc").embeddings
    got = client.embeddings.create(model="ume-demo-rl", input=texts, encoding_format="float")
    assert [d.index for d in got.data] == [0, 1] and got.model == "ume-demo-rl"
    close([d.embedding for d in got.data], want)
    b64 = client.embeddings.create(model="ume-demo-rl", input=texts)  # the client's default: base64, decoded
    close([d.embedding for d in b64.data], want, tol=1e-7)
    one = client.embeddings.create(model="ume-demo-rl", input="a red circle", encoding_format="float")
    close(one.data[0].embedding, want[0])
    assert abs(np.linalg.norm(one.data[0].embedding) - 1) < 1e-5
    assert got.usage.prompt_tokens > 0 and got.usage.total_tokens == got.usage.prompt_tokens


def test_image_data_url_chat_form_and_item_objects(client, enc):
    red, blue = png(), png((30, 60, 220), (96, 48))
    want = enc.encode([ume.Item("Represent the given image.", images=[red]),
                       ume.Item("", images=[blue])], mode="disc").embeddings
    chat = post(client, {"model": "ume-demo-rl", "encoding_format": "float", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(red)}},
        {"type": "text", "text": "Represent the given image."}]}]})
    close(chat["data"][0]["embedding"], want[0])
    objs = client.embeddings.create(model="ume-demo-rl", input=[], encoding_format="float", extra_body={
        "input": [{"text": "Represent the given image.", "image": data_url(red)}, {"images": [data_url(blue)]}]})
    close([d.embedding for d in objs.data], want)


def test_video_frames_as_data_urls(client, enc):
    frames = [png((t * 40, 100, 50), (56, 56)) for t in range(3)]
    want = enc.encode([ume.Item("What happens?", video=frames)], mode="disc").embeddings
    got = client.embeddings.create(model="ume-demo-rl", input=[], encoding_format="float", extra_body={
        "input": [{"text": "What happens?", "video": [data_url(f) for f in frames]}]})
    close(got.data[0].embedding, want[0])


def test_gen_with_reasoning_matches_encoder(client, enc):
    texts = ["a red circle", "two green triangles"]
    want = enc.encode(texts, mode="gen", max_new_tokens=12)
    got = client.embeddings.create(model="ume-demo-rl", input=texts, encoding_format="float", extra_body={
        "mode": "gen", "max_new_tokens": 12, "return_reasoning": True})
    for j, d in enumerate(got.data):
        close(d.embedding, want.embeddings[j])
        (r,) = d.model_extra["reasoning"]
        assert r["token_ids"] == list(want.token_ids[j]) and r["text"] == want.texts[j]
        assert r["num_tokens"] == int(want.num_tokens[j]) and r["forced"] == bool(want.forced[j])
    assert got.usage.model_extra["completion_tokens"] == int(want.num_tokens.sum())


def test_gen_samples_with_seed_reproduce_python(client, enc):
    texts = ["a red circle", "a blue square"]
    body = {"mode": "gen", "max_new_tokens": 10, "num_samples": 2, "seed": 7, "temperature": 1.0}
    a = client.embeddings.create(model="ume-demo-rl", input=texts, encoding_format="float", extra_body=body)
    b = client.embeddings.create(model="ume-demo-rl", input=texts, encoding_format="float", extra_body=body)
    want = enc.encode(texts, mode="gen", max_new_tokens=10, num_samples=2, temperature=1.0,
                      seed=[item_seed(7, i) for i in range(2)]).embeddings
    for j in range(2):
        samples = a.data[j].model_extra["sample_embeddings"]
        close(samples, want[j])
        close(samples, b.data[j].model_extra["sample_embeddings"], tol=1e-6)
        close(a.data[j].embedding, want[j, 0])


def test_mode_both(client, enc):
    if not supports_both():
        with pytest.raises(openai.BadRequestError) as e:
            client.embeddings.create(model="ume-demo-rl", input="x", extra_body={"mode": "both"})
        assert error_of(e)["param"] == "mode"
        return
    got = client.embeddings.create(model="ume-demo-rl", input=["a red circle"], encoding_format="float",
                                   extra_body={"mode": "both", "max_new_tokens": 12})
    close(got.data[0].embedding, enc.encode(["a red circle"], mode="gen", max_new_tokens=12).embeddings[0])
    close(got.data[0].model_extra["disc_embedding"], enc.encode(["a red circle"], mode="disc").embeddings[0])


def test_dimensions(client):
    full = client.embeddings.create(model="ume-demo-rl", input="a red circle", encoding_format="float")
    cut = client.embeddings.create(model="ume-demo-rl", input="a red circle", encoding_format="float", dimensions=64)
    v = np.asarray(full.data[0].embedding[:64])
    close(cut.data[0].embedding, v / np.linalg.norm(v), tol=1e-6)
    native = client.embeddings.create(model="ume-demo-rl", input="a", encoding_format="float", dimensions=DIM)
    assert len(native.data[0].embedding) == DIM
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="ume-demo-rl", input="a red circle", dimensions=32)
    assert error_of(e)["param"] == "dimensions" and "Matryoshka" in error_of(e)["message"]


def test_bad_items_among_good_ones(client, enc):
    good = [ume.Item("Represent the given image.", images=[png()]), ume.Item("a blue square")]
    want = enc.encode(good, mode="disc").embeddings
    got = post(client, {"encoding_format": "float", "input": [
        {"text": "Represent the given image.", "image": data_url(png())},
        {"text": "corrupt", "image": data_url(b"this is not an image")},
        {"text": "bad base64", "image": "data:image/png;base64,@@@"},
        {"text": "zTXt bomb", "image": data_url(text_bomb_png())}]})
    assert [d["index"] for d in got["data"]] == [0]
    errors = {e["index"]: e["message"] for e in got["errors"]}
    assert set(errors) == {1, 2, 3}
    assert "not a recognised image" in errors[1] and "base64" in errors[2] and "corrupt" in errors[3]
    assert all(errors[i].startswith(f"input[{i}]") for i in errors)  # named as the client sent them
    close(got["data"][0]["embedding"], want[0])
    mixed = post(client, {"encoding_format": "float", "input": ["a blue square", ""]})
    assert [d["index"] for d in mixed["data"]] == [0] and "empty item" in mixed["errors"][0]["message"]
    close(mixed["data"][0]["embedding"], want[1])
    with pytest.raises(openai.UnprocessableEntityError) as e:  # nothing embeddable: 422 with the reasons
        post(client, {"input": [{"image": data_url(b"junk")}]})
    assert "not a recognised image" in error_of(e)["message"]


# --- every limit -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("limit", "status", "body"), [
    ("max_body_bytes", 413, {"input": "x" * 400_000}),
    ("max_items", 413, {"input": ["a"] * 5}),
    ("max_text_chars", 413, {"input": ["ok", "y" * 501]}),
    ("max_frames", 413, {"input": [{"video": [data_url(png(size=(28, 28)))] * 9}]}),
    ("max_new_tokens", 400, {"input": "a", "mode": "gen", "max_new_tokens": 25}),
    ("max_num_samples", 400, {"input": "a", "mode": "gen", "num_samples": 3}),
])
def test_limits(client, limit, status, body):
    with pytest.raises(openai.APIStatusError) as e:
        post(client, body)
    assert e.value.status_code == status
    err = error_of(e)
    assert err["param"] == limit and err["code"] == "limit_exceeded" and limit in err["message"]


@pytest.mark.parametrize("image", [png(size=(201, 200)), huge_header_png()], ids=["over-the-cap", "bomb-header"])
def test_an_image_over_the_pixel_limit_is_that_items_error(client, image):
    got = post(client, {"encoding_format": "float", "input": ["a blue square", {"image": data_url(image)}]})
    assert [d["index"] for d in got["data"]] == [0]
    err = got["errors"][0]
    assert err["index"] == 1 and err["message"].startswith("input[1]") and "max_image_pixels" in err["message"]
    with pytest.raises(openai.UnprocessableEntityError) as e:  # alone: nothing embeddable
        post(client, {"input": [{"image": data_url(image)}]})
    assert "max_image_pixels" in error_of(e)["message"]


def test_video_file_frame_limit(client, tmp_path):
    import av

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for t in range(16):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), t * 15, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(openai.APIStatusError) as e:
        post(client, {"input": [{"video": data_url(path.read_bytes(), "video/mp4")}]})
    assert e.value.status_code == 413 and error_of(e)["param"] == "max_frames"


def test_request_validation(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="ume-demo-rl", input=[[1, 2, 3]])
    assert "token-id" in error_of(e)["message"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="some-other-model", input="a")
    with pytest.raises(openai.BadRequestError) as e:
        post(client, {"input": "a", "mode": "fancy"})
    assert error_of(e)["param"] == "mode"
    with pytest.raises(openai.BadRequestError) as e:
        post(client, {"input": "a", "frobnicate": 1})
    assert "frobnicate" in error_of(e)["message"]
    with pytest.raises(openai.BadRequestError):
        post(client, {"messages": [{"role": "system", "content": "be nice"}]})


# --- media policy and auth ---------------------------------------------------------------------------
def test_local_media_only_under_the_allowed_directory(client, enc, media_dir):
    want = enc.encode([ume.Item("", images=[media_dir / "sub" / "blue.png"])], mode="disc").embeddings
    got = post(client, {"encoding_format": "float", "input": [{"image": "sub/blue.png"}]})
    close(got["data"][0]["embedding"], want[0])
    got = post(client, {"encoding_format": "float", "input": [{"image": f"file://{media_dir / 'sub' / 'blue.png'}"}]})
    close(got["data"][0]["embedding"], want[0])
    with pytest.raises(openai.PermissionDeniedError) as e:
        post(client, {"input": [{"image": "../outside.png"}]})
    assert error_of(e)["param"] == "allow_local_media"
    missing = post(client, {"input": ["fine", {"image": "nope.png"}]})
    assert missing["errors"][0]["index"] == 1 and "not found" in missing["errors"][0]["message"]


def test_special_file_is_an_item_error(client, media_dir):
    import os

    fifo = media_dir / "pipe.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    got = post(client, {"input": ["fine", {"image": "pipe.png"}]})
    assert got["errors"][0]["index"] == 1 and "not a regular file" in got["errors"][0]["message"]


def test_media_policy_is_off_by_default(tmp_path):
    cfg = ServeConfig(model="m")
    (tmp_path / "a.png").write_bytes(png())
    for ref, param in ((str(tmp_path / "a.png"), "allow_local_media"), ("file:///etc/passwd", "allow_local_media"),
                       ("http://127.0.0.1:9/a.png", "allow_url_fetch")):
        with pytest.raises(RequestError) as e:
            parse_request({"input": [{"image": ref}]}, cfg, 128)
        assert e.value.param == param and e.value.code == "media_source_forbidden"


def test_url_fetch_when_allowed(tmp_path):
    import http.server

    (tmp_path / "a.png").write_bytes(png())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        req = parse_request({"input": [{"image": f"{url}/a.png"}, {"image": f"{url}/missing.png"}]},
                            ServeConfig(model="m", allow_url_fetch=True), 128)
        assert req.items[0].images[0] == png() and req.items[1] is None and "404" in req.failures[1]
    finally:
        httpd.shutdown()


def test_api_key(server):
    bad = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="ume-demo-rl", input="a")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_models_health_metrics(client, server):
    (m,) = client.models.list().data
    assert m.id == "ume-demo-rl" and m.model_extra["dimensions"] == DIM
    assert m.model_extra["limits"]["max_items"] == 4
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok"
    text = httpx.get(server + "/metrics").text
    for name in ("ume_requests_total", "ume_items_total", "ume_prompt_tokens_total", "ume_generated_tokens_total",
                 "ume_request_latency_seconds_bucket", "ume_queue_depth_items", "ume_batch_items_bucket",
                 'ume_rejected_total{reason="max_items"}'):
        assert name in text, name


# --- batching, queue, timeout ------------------------------------------------------------------------
class Gated:
    """The encoder behind a gate: the worker blocks inside encode() until the test opens it."""

    def __init__(self, enc):
        self.enc, self.gate, self.entered, self.calls = enc, threading.Event(), threading.Event(), []

    def __getattr__(self, name):
        return getattr(self.enc, name)

    def encode(self, items, **kw):
        self.calls.append(len(items))
        self.entered.set()
        assert self.gate.wait(60)
        return self.enc.encode(items, **kw)


def _async_post(url, body, out, key):
    def run():
        r = httpx.post(url + "/v1/embeddings", json=body, timeout=60)
        out[key] = (r.status_code, r.json(), r.headers)
    t = threading.Thread(target=run)
    t.start()
    return t


def _wait(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def test_concurrent_requests_merge_into_one_encoder_call(enc):
    gated = Gated(enc)
    cfg = ServeConfig(model=str(DEMO), limits=LIMITS, batch_size=8, max_wait_ms=1)
    texts = ["a red circle", "a blue square", "three yellow stars"]
    want = enc.encode(texts, mode="disc", batch_size=1).embeddings
    bad = {"input": ["fine", {"image": data_url(b"junk")}], "encoding_format": "float"}
    with ServerThread(create_app(cfg, gated)) as url:
        out: dict = {}
        first = _async_post(url, {"input": "warm up", "encoding_format": "float"}, out, "first")
        _wait(gated.entered.is_set)
        threads = [_async_post(url, {"input": t, "encoding_format": "float"}, out, t) for t in texts]
        _wait(lambda: httpx.get(url + "/health").json()["queue_requests"] == 3)
        threads.append(_async_post(url, bad, out, "bad"))
        _wait(lambda: httpx.get(url + "/health").json()["queue_requests"] == 4)
        gated.gate.set()
        for t in [first, *threads]:
            t.join(60)
        metrics = httpx.get(url + "/metrics").text
    assert gated.calls == [1, 5]  # the four waiting requests became one encoder call
    status, body, _ = out["bad"]
    assert status == 200 and [d["index"] for d in body["data"]] == [0]
    assert body["errors"][0]["index"] == 1 and body["errors"][0]["message"].startswith("input[1]: image")
    for j, t in enumerate(texts):
        status, body, _ = out[t]
        assert status == 200
        close(body["data"][0]["embedding"], want[j])
    assert 'ume_batch_requests_bucket{le="4.0",mode="disc"} 2.0' in metrics  # batches of 1 and of 4 requests


def test_batching_off_runs_requests_alone(enc):
    gated = Gated(enc)
    cfg = ServeConfig(model=str(DEMO), limits=LIMITS, batching=False)
    with ServerThread(create_app(cfg, gated)) as url:
        out: dict = {}
        first = _async_post(url, {"input": "warm up"}, out, "first")
        _wait(gated.entered.is_set)
        threads = [_async_post(url, {"input": t}, out, t) for t in ("a", "b")]
        _wait(lambda: httpx.get(url + "/health").json()["queue_requests"] == 2)
        gated.gate.set()
        for t in [first, *threads]:
            t.join(60)
    assert gated.calls == [1, 1, 1]


def test_full_queue_answers_503_and_slow_requests_time_out(enc):
    gated = Gated(enc)
    limits = ServeLimits(request_timeout_s=1.5)
    cfg = ServeConfig(model=str(DEMO), limits=limits, max_queue_items=1)
    with ServerThread(create_app(cfg, gated)) as url:
        out: dict = {}
        running = _async_post(url, {"input": "held in the encoder"}, out, "running")
        _wait(gated.entered.is_set)
        queued = _async_post(url, {"input": "waiting"}, out, "queued")
        _wait(lambda: httpx.get(url + "/health").json()["queue_items"] == 1)
        r = httpx.post(url + "/v1/embeddings", json={"input": "one too many"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["param"] == "max_queue_items"
        running.join(30)
        queued.join(30)
        for key in ("running", "queued"):
            status, body, _ = out[key]
            assert status == 408 and body["error"]["param"] == "request_timeout_s"
        # the timed-out queued request left the queue at once (the encoder is still held): room for a new one
        assert httpx.get(url + "/health").json()["queue_items"] == 0
        gated.gate.set()
        ok = httpx.post(url + "/v1/embeddings", json={"input": "after"}, timeout=30)
        assert ok.status_code == 200
    assert gated.calls == [1, 1]  # the timed-out queued request never ran


def test_an_encoder_failure_fails_only_its_own_request(enc):
    """If one request makes the merged encoder call raise, it is retried alone: the others still get vectors."""
    class Flaky(Gated):
        def encode(self, items, **kw):
            self.calls.append(len(items))
            self.entered.set()
            assert self.gate.wait(60)
            if any(getattr(it, "text", "") == "boom" for it in items):
                raise RuntimeError("kaboom")
            return self.enc.encode(items, **kw)

    flaky = Flaky(enc)
    cfg = ServeConfig(model=str(DEMO), limits=LIMITS, batch_size=8, max_wait_ms=1)
    with ServerThread(create_app(cfg, flaky)) as url:
        out: dict = {}
        first = _async_post(url, {"input": "warm up"}, out, "first")
        _wait(flaky.entered.is_set)
        threads = [_async_post(url, {"input": t, "encoding_format": "float"}, out, t) for t in ("a", "boom", "b")]
        _wait(lambda: httpx.get(url + "/health").json()["queue_requests"] == 3)
        flaky.gate.set()
        for t in [first, *threads]:
            t.join(60)
        assert httpx.get(url + "/health").json()["status"] == "ok"
    assert flaky.calls == [1, 3, 1, 1, 1]  # merged call failed, then each request alone
    assert out["a"][0] == 200 and out["b"][0] == 200
    status, body, _ = out["boom"]
    assert status == 500 and "kaboom" in body["error"]["message"] and body["error"]["code"] == "server_error"
