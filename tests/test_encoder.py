"""The encoder against the reference readouts, and its batching / error guarantees."""

import numpy as np
import pytest
import torch
from PIL import Image
from reference_impl import ForceGenAt, reference_disc, reference_gen

import ume
from ume.batching import make_batch
from ume.inputs import InputLimits, load_item

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def mixed_items(media):
    return [
        ume.Item("a short text"),
        ume.Item("an image and a much longer question about what the picture shows, " * 3, images=[media["red"]]),
        ume.Item("a video", video=media["mp4"]),
        ume.Item("two images", images=[media["blue"], media["red"]]),
        ume.Item("frames", video=media["frames"]),
    ]


def batch_of(enc, items):
    loaded = [load_item(it, i, InputLimits()) for i, it in enumerate(items)]
    return make_batch(enc.backbone.processor, enc.recipe, loaded)


def cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("family", FAMILIES)
def test_disc_equals_reference_readout(encoders, media, family):
    enc = encoders[family]
    items = mixed_items(media)
    ours = enc.encode(items, mode="disc", batch_size=2).embeddings
    ref = reference_disc(enc.model, batch_of(enc, items), enc.backbone.disc_id).numpy()
    for i in range(len(items)):
        assert cos(ours[i], ref[i]) >= 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_readout_is_last_layer_after_final_norm(encoders, family):
    """transformers 5.x: our state = norm(last decoder layer output) = hidden_states[-1]."""
    enc = encoders[family]
    lm = enc.model.model.language_model
    captured = {}
    handle = lm.layers[-1].register_forward_hook(lambda m, i, o: captured.update(h=o[0] if isinstance(o, tuple) else o))
    try:
        batch = batch_of(enc, [ume.Item("hello there")])
        with torch.no_grad():
            full = enc.model(**batch, output_hidden_states=True)
            ours = enc.model.model(**batch).last_hidden_state
    finally:
        handle.remove()
    post_norm = lm.norm(captured["h"])
    assert torch.allclose(ours, post_norm, atol=1e-6)
    assert torch.allclose(full.hidden_states[-1], post_norm, atol=1e-6)
    assert not torch.allclose(captured["h"], post_norm, atol=1e-3)  # the norm does change the state


@pytest.mark.parametrize("family", FAMILIES)
def test_gen_equals_reference_hidden_states_j_plus_1(encoders, media, family):
    enc = encoders[family]
    bb = enc.backbone
    items = mixed_items(media)[:3]
    lengths = [5, 17, 9]
    banned = sorted(enc.eos_ids()) + enc.vision_ids()  # ume never samples vision placeholders
    hook = ForceGenAt(lengths, bb.gen_id, banned).hook
    ours = enc.encode(items, mode="gen", batch_size=3, max_new_tokens=64, logits_processor=hook)
    assert not ours.forced.any()  # <gen_emb> was chosen by the (steered) model, not appended
    for i, item in enumerate(items):  # the reference, one item at a time
        batch = batch_of(enc, [item])
        proc = ForceGenAt([lengths[i]], bb.gen_id, banned, prompt_len=batch["input_ids"].shape[1])
        ref = reference_gen(enc.model, batch, bb.gen_id, max_new_tokens=lengths[i] + 2, logits_processor=proc)
        assert ref.generated[0, : lengths[i] + 1].tolist() == ours.token_ids[i]
        assert ours.num_tokens[i] == lengths[i] + 1
        assert cos(ours.embeddings[i], ref.vectors[0].numpy()) >= 0.9999


def test_gen_reference_batched_with_padding(encoder, media):
    enc, bb = encoder, encoder.backbone
    items = mixed_items(media)[:4]
    lengths = [3, 11, 7, 20]
    banned = sorted(enc.eos_ids()) + enc.vision_ids()
    ours = enc.encode(items, mode="gen", batch_size=2, max_new_tokens=64,
                      logits_processor=ForceGenAt(lengths, bb.gen_id, banned).hook)
    batch = batch_of(enc, items)
    proc = ForceGenAt(lengths, bb.gen_id, banned, prompt_len=batch["input_ids"].shape[1])
    ref = reference_gen(enc.model, batch, bb.gen_id, max_new_tokens=max(lengths) + 2, logits_processor=proc)
    for i in range(len(items)):
        assert cos(ours.embeddings[i], ref.vectors[i].numpy()) >= 0.9999


def test_forced_gen_emb_when_budget_runs_out(encoder):
    r = encoder.encode(["tell me a story"], mode="gen", max_new_tokens=6)
    assert r.forced[0] and r.num_tokens[0] == 7
    assert r.token_ids[0][-1] == encoder.backbone.gen_id
    assert r.texts[0].endswith("<gen_emb>")


def test_one_shape_rule_the_sample_axis_is_there_iff_k_above_1(encoder):
    one = encoder.encode(["a", "bb"], mode="gen", max_new_tokens=5)
    assert one.embeddings.shape == (2, encoder.dim) and one.num_tokens.shape == one.forced.shape == (2,)
    assert isinstance(one.texts[0], str) and isinstance(one.token_ids[0][0], int) and one.num_samples == 1
    view = one.samples  # the per-sample view keeps the axis, for code written for any k
    assert view.num_tokens.shape == (2, 1) and view.texts[1] == [one.texts[1]]
    assert view.token_ids[0] == [one.token_ids[0]] and view.forced[0, 0] == one.forced[0]
    k = encoder.encode(["a", "bb"], mode="gen", max_new_tokens=5, num_samples=2, seed=0)
    assert k.embeddings.shape == (2, 2, encoder.dim) and k.num_tokens.shape == k.forced.shape == (2, 2)
    assert isinstance(k.texts[0], list) and len(k.texts[0]) == 2 and k.samples.texts == k.texts
    assert encoder.encode(["a"]).samples is None


def test_missing_gen_emb_policy_error(tiny_dirs):
    strict = ume.load(tiny_dirs["qwen2_vl"], device="cpu", recipe=ume.Recipe(missing_gen_emb="error"))
    with pytest.raises(ume.InputError, match="no <gen_emb> within max_new_tokens=4"):
        strict.encode(["x"], mode="gen", max_new_tokens=4)
    r = strict.encode(["x", "y"], mode="gen", max_new_tokens=4, on_error="skip")
    assert len(r.errors) == 2 and np.isnan(r.embeddings).all()


@pytest.mark.parametrize("mode", ["disc", "gen"])
def test_batch_composition_does_not_change_vectors(encoder, media, mode):
    items = mixed_items(media)
    kw = {"max_new_tokens": 12} if mode == "gen" else {}
    together = encoder.encode(items, mode=mode, batch_size=5, **kw).embeddings
    for i, item in enumerate(items):
        alone = encoder.encode([item], mode=mode, **kw).embeddings[0]
        assert cos(alone, together[i]) >= 0.9999, i


def test_samples_shape_seed_and_batch_independence(encoder, media):
    items = mixed_items(media)[:3]
    a = encoder.encode(items, mode="gen", num_samples=3, max_new_tokens=10, seed=7, batch_size=3)
    assert a.embeddings.shape == (3, 3, encoder.dim)
    assert a.settings["do_sample"] and a.settings["temperature"] == 1.0
    c = encoder.encode(items, mode="gen", num_samples=3, max_new_tokens=10, seed=7, batch_size=1)
    assert a.token_ids == c.token_ids
    assert np.allclose(a.embeddings, c.embeddings, atol=1e-5)
    # per-item seeds travel with their items: the reversed list, one at a time, gives the same samples reversed
    seeds = [11, 22, 33]
    fwd = encoder.encode(items, mode="gen", num_samples=3, max_new_tokens=10, seed=seeds, batch_size=3)
    rev = encoder.encode(items[::-1], mode="gen", num_samples=3, max_new_tokens=10, seed=seeds[::-1], batch_size=1)
    assert rev.token_ids[::-1] == fwd.token_ids
    assert np.allclose(rev.embeddings[::-1], fwd.embeddings, atol=1e-5)
    distinct = {tuple(t) for t in a.token_ids[0]}
    assert len(distinct) > 1  # samples differ at temperature 1
    d = encoder.encode(items, mode="gen", num_samples=3, max_new_tokens=10, seed=8, batch_size=3)
    assert a.token_ids != d.token_ids


def test_bad_items_are_skipped_without_shifting_others(encoder, media, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    items = [ume.Item("first"), ume.Item("bad", images=[broken], id="b1"), "third", {"text": ""},
             ume.Item("fifth", images=[media["red"]])]
    r = encoder.encode(items, mode="disc", on_error="skip", batch_size=2)
    assert [(e.index, e.id) for e in r.errors] == [(1, "b1"), (3, None)]
    assert "item 1 (id='b1')" in r.errors[0].reason and "empty item" in r.errors[1].reason
    assert r.ok.tolist() == [True, False, True, False, True]
    assert np.isnan(r.embeddings[[1, 3]]).all()
    clean = encoder.encode([items[0], items[2], items[4]], mode="disc").embeddings
    assert np.allclose(r.embeddings[[0, 2, 4]], clean, atol=1e-6)
    with pytest.raises(ume.InputError, match="item 1"):
        encoder.encode(items[:3], mode="disc")  # fail-fast raises the first bad item it meets


def test_pil_and_bytes_and_path_images_agree(encoder, media):
    img = Image.open(media["red"]).convert("RGB")
    vecs = encoder.encode([ume.Item("x", images=[media["red"]]), ume.Item("x", images=[img]),
                           ume.Item("x", images=[media["red"].read_bytes()])], mode="disc").embeddings
    assert np.allclose(vecs[0], vecs[1], atol=1e-6) and np.allclose(vecs[0], vecs[2], atol=1e-6)


def test_argument_validation(encoder):
    with pytest.raises(ValueError, match="mode"):
        encoder.encode(["x"], mode="sideways")
    with pytest.raises(ValueError, match="num_samples > 1 needs mode='gen'"):
        encoder.encode(["x"], mode="disc", num_samples=2)


def test_load_takes_the_attention_kernel_and_pixel_bounds(tiny_dirs, media):
    from PIL import Image

    path = tiny_dirs["qwen2_vl"]
    big = Image.new("RGB", (640, 480), "red")
    item = ume.Item("a picture", images=[big])
    sdpa, eager = ume.load(path, device="cpu"), ume.load(path, device="cpu", attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager"
    assert cos(sdpa.encode([item]).embeddings[0], eager.encode([item]).embeddings[0]) >= 0.9999
    capped = ume.load(path, device="cpu", max_pixels=56 * 56)
    assert capped.recipe.max_pixels == 56 * 56 and capped.recipe.digest() != sdpa.recipe.digest()  # caches re-key
    from ume.batching import make_batch
    from ume.inputs import InputLimits, load_item

    grid = make_batch(capped.backbone.processor, capped.recipe, [load_item(item, 0, InputLimits())])["image_grid_thw"]
    assert int(grid.prod()) // 4 <= 4  # at most 56 x 56 pixels: 4 visual tokens
