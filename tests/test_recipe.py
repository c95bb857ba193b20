import json
from pathlib import Path

import pytest
from PIL import Image

from ume.batching import make_batch, prompt_texts
from ume.inputs import LoadedItem
from ume.recipe import GENERATION_PROMPT, RECIPE_FILE, Recipe

EXPECTED = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>Find the red circle.\n<disc_emb>\n"
    + GENERATION_PROMPT + "<|im_end|>\n<|im_start|>assistant\n"
)


def test_generation_prompt_is_verbatim():
    assert GENERATION_PROMPT == (
        "Represent the above input text, images, videos, or any combination of the three as embeddings. "
        "First output the thinking process in <think> </think> tags and then summarize the entire input in "
        "a word or sentence. Finally, use the <gen_emb> tag to represent the entire input."
    )


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_rendered_prompt_matches_reference(encoders, family):
    proc = encoders[family].backbone.processor
    text = prompt_texts(proc, Recipe(), [LoadedItem("  <image> Find the red circle. ", [], None)])[0]
    assert text == EXPECTED


def test_blank_image_policy(encoder):
    proc = encoder.backbone.processor
    pad = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    text_only = LoadedItem("hello", [], None)
    batch = make_batch(proc, Recipe(), [text_only])
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]  # qwen-vl-utils enlarges the 28x28 blank to 56x56
    assert int((batch["input_ids"] == pad).sum()) == 4
    old = make_batch(proc, Recipe(vision_preprocess="processor"), [text_only])
    assert old["image_grid_thw"].tolist() == [[1, 2, 2]]  # processor only: 784 px = one visual token
    assert int((old["input_ids"] == pad).sum()) == 1
    never = make_batch(proc, Recipe(blank_image="never"), [text_only])
    assert "image_grid_thw" not in never
    with_image = make_batch(proc, Recipe(), [LoadedItem("x", [Image.new("RGB", (64, 64))], None)])
    assert with_image["image_grid_thw"].tolist() == [[1, 4, 4]]  # a real image gets no extra blank


def test_vision_preprocess_by_version(tmp_path):
    assert Recipe().vision_preprocess == "qwen-vl-utils" and Recipe().version == 2
    v1 = {k: v for k, v in Recipe().to_dict().items() if k != "vision_preprocess"} | {"version": 1}
    assert Recipe.from_dict(v1).vision_preprocess == "processor"  # what version-1 checkpoints were trained with
    v2 = {k: v for k, v in Recipe().to_dict().items() if k != "vision_preprocess"}
    assert Recipe.from_dict(v2).vision_preprocess == "qwen-vl-utils"
    Recipe(vision_preprocess="processor").save(tmp_path)
    assert Recipe.load(tmp_path) == Recipe(vision_preprocess="processor")
    assert Recipe(vision_preprocess="processor").digest() != Recipe().digest()  # caches are keyed apart


@pytest.mark.parametrize("model", ["ume-demo-pretrain", "ume-demo-sft", "ume-demo-rl"])
def test_shipped_demo_models_were_trained_with_the_reference_recipe(model):
    directory = Path(__file__).parents[1] / "models" / model
    assert json.loads((directory / RECIPE_FILE).read_text())["version"] == 2
    assert Recipe.load(directory) == Recipe()  # qwen-vl-utils preprocessing, the reference's prompts and limits


def test_recipe_roundtrip_and_default(tmp_path):
    r = Recipe(num_frames=4, blank_image="never")
    r.save(tmp_path)
    assert Recipe.load(tmp_path) == r
    assert Recipe.load(tmp_path / "elsewhere") == Recipe()  # no file: the reference recipe
    assert r.digest() != Recipe().digest()
    data = json.loads((tmp_path / RECIPE_FILE).read_text())
    data["surprise"] = 1
    (tmp_path / RECIPE_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown field"):
        Recipe.load(tmp_path)


def test_invalid_recipe_values():
    with pytest.raises(ValueError, match="blank_image"):
        Recipe(blank_image="sometimes")
    with pytest.raises(ValueError, match="disc_token"):
        Recipe(disc_separator="\n")
    with pytest.raises(ValueError, match="vision_preprocess"):
        Recipe(vision_preprocess="torchvision")


def test_find_recipe_falls_back_only_when_the_file_is_absent(tmp_path, monkeypatch):
    """A hub checkpoint's recipe comes from the hub cache offline; a malformed one is an error, not the
    reference recipe in disguise (issue: any exception used to fall back)."""
    import hashlib
    import json
    import os

    import huggingface_hub.constants as hub_constants
    import pytest

    from ume.backbone import find_recipe

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    commit = "1" * 40

    def cached(repo: str, files: dict[str, bytes]) -> None:
        base = tmp_path / ("models--" + repo.replace("/", "--"))
        (base / "refs").mkdir(parents=True)
        (base / "refs" / "main").write_text(commit)
        (base / "blobs").mkdir()
        for name, data in files.items():
            blob = base / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            link = base / "snapshots" / commit / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))

    good = Recipe(blank_image_size=56)
    cached("org/good", {"config.json": b"{}", "ume_recipe.json": json.dumps(good.to_dict()).encode()})
    cached("org/broken", {"config.json": b"{}", "ume_recipe.json": b'{"blank_image_size": 56, "no_such_field": 1}'})
    cached("org/none", {"config.json": b"{}"})
    assert find_recipe("org/good") == good
    with pytest.raises(ValueError, match="unknown field"):
        find_recipe("org/broken")
    with pytest.warns(UserWarning, match="reference recipe"):
        assert find_recipe("org/none") == Recipe()


def test_old_recipes_naming_the_one_readout_load_and_any_other_readout_is_refused():
    old = {**Recipe().to_dict(), "readout": "last_layer_post_norm"}
    assert Recipe.from_dict(old) == Recipe()
    with pytest.raises(ValueError, match="readout 'mean_pool' is not implemented"):
        Recipe.from_dict({**old, "readout": "mean_pool"})


def test_the_readout_rule_reads_disc_in_the_prompt_and_gen_in_the_completion():
    import torch

    from ume.readout import EmbeddingTokens, embedding_positions, read_embedding

    t = EmbeddingTokens(disc=7, gen=9)
    ids = torch.tensor([[1, 7, 9, 2, 5, 9, 3],   # prompt: 7 and an instruction's 9; completion (from 4): 9 at 5
                        [0, 1, 7, 9, 2, 5, 9]])  # left-padded by one: the same, shifted
    start = torch.tensor([4, 5])
    assert embedding_positions(ids, "disc", t, start).tolist() == [1, 2]
    assert embedding_positions(ids, "gen", t, start).tolist() == [5, 6]  # never the prompt's own <gen_emb>
    assert embedding_positions(ids[:, :4], "gen", t, 4).tolist() == [-1, -1]
    hidden = torch.randn(2, 7, 3)
    got = read_embedding(hidden, ids, "gen", t, start)
    assert torch.allclose(got[0], hidden[0, 5] / hidden[0, 5].norm())
    with pytest.raises(ValueError, match="not found in rows"):
        read_embedding(hidden[:, :4], ids[:, :4], "gen", t, 4)


def test_a_model_that_cannot_be_found_is_named_at_once(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    from ume.backbone import check_source, load_backbone

    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_backbone(str(tmp_path / "no-such-model"))  # a path: never mistaken for a malformed hub id
    with pytest.raises(FileNotFoundError, match="no such directory"):
        check_source("runs/a/b")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache, and HF_HUB_OFFLINE is set"):
        check_source("org/not-cached-anywhere")
