"""MiniMMEB (`ume.synth`): determinism, file layouts, ground truth re-derived from the scene specs, training
records, hold-out and train/eval disjointness. One tiny build per session (plus one more for determinism).

The label derivations below are written independently of the generators: they read only the JSON scene
specs and the written eval files, so a generator bug that writes a wrong label fails here.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from ume.synth.build import build
from ume.synth.cli import synth_app
from ume.synth.docpage import Page, render_page
from ume.synth.draw import render_scene
from ume.synth.scene import Obj
from ume.synth.tasks import BASE_TASKS, MINI_TASKS, TASKS_BY_NAME
from ume.synth.vocab import CELL_NAMES, HOLDOUT_COMBOS, NUMBER_WORDS

N = 12  # queries per task at scale "tiny"
LOADERS = {"image_cls", "image_qa", "image_t2i", "image_i2t", "image_i2i_vg", "video_classification", "msrvtt",
           "nextqa", "moment_retrieval", "vidore"}
# The published layouts, spelled out here rather than taken from the writer (docs/minimmeb.md "Files").
HUB = "minimmeb"  # ROOT/<owner>/<repo>
IMAGE_REPO = f"{HUB}/MiniMMEB_Test_Instruct"  # as ziyjiang/MMEB_Test_Instruct
MEDIA = f"{HUB}/MiniMMEB-V2"  # as TIGER-Lab/MMEB-V2, unpacked
SHARD = "test-00000-of-00001.parquet"
FORMAT = re.compile(r"<think>.*?</think>.*?\s*<answer>.*?\s*<gen_emb>", re.DOTALL)
DIRS = {(0, -1): "left", (0, 1): "right", (-1, 0): "up", (1, 0): "down"}


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("minimmeb") / "build"
    build(out, seed=0, scale="tiny", jobs=2, progress=False)
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def scenes(root: Path, task: str) -> list[dict[str, Any]]:
    return read_jsonl(root / "scenes" / f"{task}.jsonl")


def row_file(root: Path, task: str) -> Path:
    t = TASKS_BY_NAME[task]
    return root / IMAGE_REPO / task / SHARD if t.modality == "image" else root / HUB / task / "data" / SHARD


def read_parquet(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def rows(root: Path, task: str) -> list[dict[str, Any]]:
    return read_parquet(row_file(root, task))


def visdoc(root: Path, task: str, config: str) -> list[dict[str, Any]]:
    return read_parquet(root / HUB / task / config / SHARD)


def card_configs(path: Path) -> dict[str, list[dict[str, str]]]:
    """The YAML `configs:` of a dataset card: config name -> data_files."""
    text = path.read_text()
    assert text.startswith("---\n")
    return {c["config_name"]: c["data_files"] for c in yaml.safe_load(text.split("---\n")[1])["configs"]}


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def tasks_of(*bases: str) -> list[str]:
    return [t.name for t in MINI_TASKS if t.base in bases]


# ---- determinism, manifest, CLI ------------------------------------------------------------------------
def test_same_seed_gives_identical_files_through_the_cli(root, tmp_path):
    out = tmp_path / "again"
    res = CliRunner().invoke(synth_app, ["build", str(out), "--seed", "0", "--scale", "tiny", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    first, second = digests(root), digests(out)
    assert len(first) > 1000 and first == second
    res = CliRunner().invoke(synth_app, ["build", str(out), "--scale", "tiny"])
    assert res.exit_code == 1 and "not empty" in res.output


def test_other_seed_changes_data_not_layout(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, 0), (b, 1)):
        build(out, seed=seed, scale="tiny", progress=False)
    tables = [sorted(p.relative_to(out).as_posix() for ext in ("*.json*", "*.parquet", "*.md")
                     for p in out.rglob(ext)) for out in (a, b)]
    assert tables[0] == tables[1]
    assert sum(t.endswith(".parquet") for t in tables[0]) == sum(3 if t.modality == "visdoc" else 1 for t in MINI_TASKS)
    assert (a / "train" / "sft.json").read_bytes() != (b / "train" / "sft.json").read_bytes()


def test_manifest_matches_registry(root):
    manifest = json.loads((root / "manifest.json").read_text())
    assert [t["name"] for t in manifest["tasks"]] == [t.name for t in MINI_TASKS]
    for entry in manifest["tasks"]:
        t = TASKS_BY_NAME[entry["name"]]
        assert entry["n_queries"] == N and entry["seed"] == 0 and entry["scale"] == "tiny"
        assert entry["loader"] in LOADERS and entry["split"] in ("eval", "holdout")
        assert entry["metric"] == ("ndcg_linear@5" if t.modality == "visdoc" else "hit@1")
        assert entry["ranking"] == ("global" if t.loader in ("video_classification", "msrvtt", "vidore") else "local")
        assert bool(entry["instruction"]) == (t.modality != "image")
        assert isinstance(entry["reasoning_heavy"], bool)
    assert manifest["train"]["sft"]["pairs"] == 3 * len(BASE_TASKS)
    assert manifest["train"]["rl"]["pairs"] == len(BASE_TASKS)
    assert sum(t.reasoning_heavy for t in BASE_TASKS) > len(BASE_TASKS) / 2


def test_preview_draws_every_task(root):
    from ume.synth.preview import preview

    img = Image.open(preview(root))
    assert img.height > 150 * len(MINI_TASKS) and img.width > 1000


# ---- layouts and schemas (docs/minimmeb.md "Files") --------------------------------------------------------
def test_build_is_a_tree_of_hub_snapshots(root):
    image = [t.name for t in MINI_TASKS if t.modality == "image"]
    others = [t.name for t in MINI_TASKS if t.modality != "image"]
    assert sorted(p.name for p in (root / HUB).iterdir()) == sorted(["MiniMMEB_Test_Instruct", "MiniMMEB-V2", *others])
    assert sorted(p.name for p in (root / MEDIA).iterdir()) == ["image-tasks", "video-tasks"]
    assert sorted(p.name for p in (root / IMAGE_REPO).iterdir()) == sorted(["README.md", *image])
    for task in image:
        assert [p.name for p in (root / IMAGE_REPO / task).iterdir()] == [SHARD]
    assert card_configs(root / IMAGE_REPO / "README.md") == {
        t: [{"split": "test", "path": f"{t}/test-*"}] for t in image}
    for t in MINI_TASKS:
        if t.modality == "video":  # the card says what the default patterns of `datasets` find: data/test-*
            assert sorted(p.relative_to(root / HUB / t.name).as_posix()
                          for p in (root / HUB / t.name).rglob("*")) == ["README.md", "data", f"data/{SHARD}"]
            assert card_configs(root / HUB / t.name / "README.md") == {
                "default": [{"split": "test", "path": "data/test-*"}]}
    assert not list(root.rglob("pages")) and not list(root.rglob(".*.tmp"))
    top = {p.name for p in root.iterdir()} - {"preview.png"}  # test_preview_draws_every_task may have run
    assert top == {HUB, "manifest.json", "scenes", "train"}


def test_datasets_reads_the_hub_layout(root, tmp_path):
    """`datasets` itself resolves the configs and splits, and decodes the pages as an `Image` feature."""
    import datasets

    cache = str(tmp_path / "cache")
    vqa = datasets.load_dataset(str(root / IMAGE_REPO), "MiniVQA", split="test", cache_dir=cache)
    assert vqa.to_list() == rows(root, "MiniVQA")
    assert vqa.features["tgt_text"] == datasets.List(datasets.Value("string"))
    track = datasets.load_dataset(str(root / HUB / "MiniTrackQA"), split="test", cache_dir=cache)
    assert track.to_list() == rows(root, "MiniTrackQA")
    corpus = datasets.load_dataset(str(root / HUB / "MiniDocTable"), "corpus", split="test", cache_dir=cache)
    assert isinstance(corpus.features["image"], datasets.Image)
    pages = {cid: p for s in scenes(root, "MiniDocTable") for cid, p in s["spec"]["pages"].items()}
    assert len(corpus) == len(pages)
    first = corpus[0]
    assert first["image"].convert("RGB").tobytes() == render_page(Page(**pages[first["corpus-id"]])).tobytes()
    assert card_configs(root / HUB / "MiniDocTable" / "README.md") == {
        c: [{"split": "test", "path": f"{c}/test-*"}] for c in ("corpus", "qrels", "queries")}


def mmeb_query(loader: str, row: dict[str, Any]) -> str:
    """The reference loaders' query assembly (spec §3.3), to check the written strings come out clean."""
    inst = row["qry_inst"].replace("<|image_1|>", "")
    if loader in ("image_cls", "image_i2t"):
        text = " " + row["qry_text"] if row["qry_text"] else ""
        return ("<|image_pad|> " + inst + text).replace(" \n", "\n") + "\n"
    if loader == "image_qa":
        return "<|image_pad|>\n" + inst.strip() + " " + row["qry_text"] + "\n"
    if loader == "image_t2i":
        return row["qry_inst"] + " " + row["qry_text"] + "\n"
    return ("<|image_pad|> \n" + inst.strip() + " " + row["qry_text"]).replace(" \n", "\n") + "\n"


@pytest.mark.parametrize("task", [t.name for t in MINI_TASKS if t.modality == "image"])
def test_image_rows_follow_the_layout(root, task):
    t = TASKS_BY_NAME[task]
    media = root / MEDIA / "image-tasks"
    assert pq.read_schema(row_file(root, task)).remove_metadata() == pa.schema([
        ("qry_inst", pa.string()), ("qry_text", pa.string()), ("qry_img_path", pa.string()), ("tgt_inst", pa.string()),
        ("tgt_text", pa.list_(pa.string())), ("tgt_img_path", pa.list_(pa.string()))])
    table = rows(root, task)
    assert len(table) == N
    for row in table:
        assert set(row) == {"qry_inst", "qry_text", "qry_img_path", "tgt_inst", "tgt_text", "tgt_img_path"}
        assert all(isinstance(row[k], str) for k in ("qry_inst", "qry_text", "qry_img_path", "tgt_inst"))
        assert isinstance(row["tgt_text"], list) and isinstance(row["tgt_img_path"], list)
        assert len(row["tgt_text"]) == len(row["tgt_img_path"]) and 7 <= len(row["tgt_text"]) <= 10
        assert (row["qry_img_path"] == "") == (t.loader == "image_t2i")
        images_as_targets = t.loader in ("image_t2i", "image_i2i_vg")
        assert all(bool(p) == images_as_targets for p in row["tgt_img_path"])
        for p in [row["qry_img_path"], *row["tgt_img_path"]]:
            assert not p or (media / p).is_file()
        names = row["tgt_img_path"] if images_as_targets else row["tgt_text"]
        assert len(set(names)) == len(names), "candidates must be distinct"
        query = mmeb_query(t.loader, row)
        assert "<|image_1|>" not in query and "  " not in query and query.endswith("\n")
        assert query.startswith("<|image_pad|>\n") != (t.loader == "image_t2i")


@pytest.mark.parametrize("task", [t.name for t in MINI_TASKS if t.modality == "video"])
def test_video_rows_follow_the_layout(root, task):
    t = TASKS_BY_NAME[task]
    frames = root / MEDIA / "video-tasks" / "frames" / t.group / task
    fields = {"video_classification": {"video_id", "pos_text"}, "msrvtt": {"video_id", "video", "caption"},
              "nextqa": {"video", "question", "a0", "a1", "a2", "a3", "a4", "answer", "qid", "type"},
              "moment_retrieval": {"query", "video_path"}}[t.loader]
    table = rows(root, task)
    assert len(table) == N and sorted(p.name for p in frames.iterdir()) == [f"vid{i:05d}" for i in range(N)]
    for row in table:
        assert set(row) == fields and all(isinstance(v, int if k in ("answer", "qid") else str) for k, v in row.items())
        vid = Path(row["video_path"]).stem if t.loader == "moment_retrieval" else row.get("video_id", row.get("video"))
        assert (frames / vid).is_dir() and any((frames / vid).iterdir())
        if t.loader == "nextqa":
            assert isinstance(row["answer"], int) and 0 <= row["answer"] < 5
            assert len({row[f"a{k}"] for k in range(5)}) == 5
        if t.loader == "moment_retrieval":
            clips = sorted(p.name for p in (frames / vid).iterdir())
            assert "query" in clips and [c for c in clips if c.startswith("positive")] == ["positive"]
            assert len(clips) - 1 >= 8 and all(any((frames / vid / c).iterdir()) for c in clips)
            assert len(list((frames / vid / "query").iterdir())) == 16
    if t.loader == "msrvtt":
        assert len({r["caption"] for r in table}) == N, "a global pool needs one right answer per query"


@pytest.mark.parametrize("task", ["MiniDocTable", "MiniDocReport"])
def test_visdoc_follows_beir_layout(root, task):
    tdir = root / HUB / task
    queries, corpus, qrels = (visdoc(root, task, n) for n in ("queries", "corpus", "qrels"))
    assert sorted(p.relative_to(tdir).as_posix() for p in tdir.rglob("*") if p.is_file()) == [
        "README.md", f"corpus/{SHARD}", f"qrels/{SHARD}", f"queries/{SHARD}"]
    assert json.loads(pq.read_schema(tdir / "corpus" / SHARD).metadata[b"huggingface"])["info"]["features"] == {
        "corpus-id": {"dtype": "string", "_type": "Value"}, "image": {"_type": "Image"}}
    assert len(queries) == N and all(set(q) == {"query-id", "query"} for q in queries)
    for c in corpus:
        assert set(c) == {"corpus-id", "image"} and isinstance(c["corpus-id"], str) and c["image"]["path"] is None
        assert Image.open(io.BytesIO(c["image"]["bytes"])).format == "PNG"
    assert len({c["corpus-id"] for c in corpus}) == len(corpus)
    qids, cids = {q["query-id"] for q in queries}, {c["corpus-id"] for c in corpus}
    assert all(r["query-id"] in qids and r["corpus-id"] in cids and isinstance(r["score"], int) for r in qrels)
    assert {r["query-id"] for r in qrels} == qids
    grades = {r["score"] for r in qrels}
    assert grades == ({1} if task == "MiniDocTable" else {1, 2})


# ---- ground truth, re-derived from the scene specs ----------------------------------------------------
def objects(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["objects"]


def name(o: dict[str, Any]) -> str:
    return f"{o['colour']} {o['shape']}"


def art(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def assert_pixels(root: Path, rel: str, scene: dict[str, Any]) -> None:
    """The written image shows exactly the scene of the spec."""
    drawn = render_scene(tuple(Obj(**o) for o in objects(scene)))
    assert Image.open(root / MEDIA / "image-tasks" / rel).tobytes() == drawn.tobytes()


@pytest.mark.parametrize("task", tasks_of("MiniShapes", "MiniMajority"))
def test_classification_labels(root, task):
    for s, row in zip(scenes(root, task), rows(root, task), strict=True):
        objs = objects(s["spec"]["scene"])
        if task.startswith("MiniShapes"):
            assert len(objs) == 1 and row["tgt_text"][0] == name(objs[0])
        else:
            counts = Counter(o["colour"] for o in objs).most_common()
            assert counts[0][1] > counts[1][1]
            assert row["tgt_text"][0] == f"mostly {counts[0][0]}, {counts[0][1]} of {len(objs)}"
        assert_pixels(root, row["qry_img_path"], s["spec"]["scene"])


def vqa_answer(objs: list[dict[str, Any]], q: dict[str, Any]) -> str:
    if q["type"] == "count_combo":
        return str(sum(name(o) == f"{q['colour']} {q['shape']}" for o in objs))
    [key] = [o for o in objs if name(o) == f"{q['colour']} {q['shape']}"]
    dr, dc = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}.get(q.get("dir"), (0, 0))
    if q["type"] == "count_dir":
        return str(sum((o["col"] - key["col"]) * dc > 0 or (o["row"] - key["row"]) * dr > 0 for o in objs))
    if q["type"] == "count_row":
        return str(sum(o["row"] == key["row"] for o in objs) - 1)
    if q["type"] in ("colour_rel", "shape_rel"):
        [nb] = [o for o in objs if (o["row"], o["col"]) == (key["row"] + dr, key["col"] + dc)]
        return nb["colour" if q["type"] == "colour_rel" else "shape"]
    if q["type"] == "letter_on":
        return key["label"]
    [marked] = [o for o in objs if o["label"] == q["letter"]]
    return marked["colour"]


@pytest.mark.parametrize("task", tasks_of("MiniVQA"))
def test_vqa_answers(root, task):
    for s, row in zip(scenes(root, task), rows(root, task), strict=True):
        q = s["spec"]["question"]
        assert row["tgt_text"][0] == vqa_answer(objects(s["spec"]["scene"]), q)
        named = q["letter"] if q["type"] == "colour_of_letter" else f"{q['colour']} {q['shape']}"
        assert named in row["qry_text"]


def satisfies(desc: dict[str, Any], scene: dict[str, Any]) -> bool:
    objs = objects(scene)
    if sorted([o["size"], o["colour"], o["shape"]] for o in objs) != sorted(desc["objects"]):
        return False
    held = {"left of": lambda a, b: a["col"] < b["col"], "right of": lambda a, b: a["col"] > b["col"],
            "above": lambda a, b: a["row"] < b["row"], "below": lambda a, b: a["row"] > b["row"]}[desc["relation"]]
    first, second = desc["objects"][:2]
    return any(held(a, b) for a in objs for b in objs if a is not b
               and [a["size"], a["colour"], a["shape"]] == first and [b["size"], b["colour"], b["shape"]] == second)


@pytest.mark.parametrize("task", tasks_of("MiniCaps_t2i"))
def test_t2i_only_the_positive_matches_the_caption(root, task):
    for s, row in zip(scenes(root, task), rows(root, task), strict=True):
        desc, cands = s["spec"]["caption"], s["spec"]["candidates"]
        assert [satisfies(desc, c) for c in cands] == [True] + [False] * (len(cands) - 1)
        assert all(f"{c} {sh}" in row["qry_text"] for _, c, sh in desc["objects"])
        assert_pixels(root, row["tgt_img_path"][0], cands[0])


def parse_count_caption(text: str) -> list[list[Any]]:
    """"two red circles, an orange square and a blue diamond" -> sorted [count, colour, shape] groups."""
    words = {w: i for i, w in enumerate(NUMBER_WORDS)} | {"a": 1, "an": 1}
    groups = []
    for part in re.split(r", | and ", text):
        count, colour, shape = part.split()
        groups.append([words[count], colour, shape.removesuffix("s") if words[count] > 1 else shape])
    return sorted(groups)


def test_i2t_captions_count_the_scene(root):
    for s, row in zip(scenes(root, "MiniCount_i2t"), rows(root, "MiniCount_i2t"), strict=True):
        truth = sorted([n, c, sh] for (c, sh), n in Counter((o["colour"], o["shape"])
                                                            for o in objects(s["spec"]["scene"])).items())
        parsed = [parse_count_caption(t) for t in row["tgt_text"]]
        assert parsed[0] == truth and all(p != truth for p in parsed[1:])


def apply_edits(scene: dict[str, Any], edits: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    objs = [dict(o) for o in objects(scene)]
    for e in edits:
        if e["op"] == "add":
            objs.append(dict(e["object"]))
            continue
        [i] = [i for i, o in enumerate(objs) if [o["colour"], o["shape"]] == e["target"]]
        if e["op"] == "remove":
            del objs[i]
        elif e["op"] == "recolour":
            objs[i]["colour"] = e["to"]
        else:
            objs[i]["row"], objs[i]["col"] = e["to"]
    return shown(objs)


def shown(objs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((o["row"], o["col"], o["shape"], o["colour"], o["size"], o["label"]) for o in objs)


def test_edit_positive_is_the_edited_source(root):
    for s, row in zip(scenes(root, "MiniEdit"), rows(root, "MiniEdit"), strict=True):
        spec = s["spec"]
        target = apply_edits(spec["source"], spec["edits"])
        assert [shown(objects(c)) == target for c in spec["candidates"]] == [True] + [False] * 9
        assert_pixels(root, row["qry_img_path"], spec["source"])
        assert_pixels(root, row["tgt_img_path"][0], spec["candidates"][0])


def resolve(expr: dict[str, Any], objs: list[dict[str, Any]]) -> list[int]:
    k = expr["kind"]
    if k == "relation":
        [anchor] = [o for o in objs if [o["colour"], o["shape"]] == expr["anchor"]]
        dr, dc = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[expr["dir"]]
        return [i for i, o in enumerate(objs) if (o["row"], o["col"]) == (anchor["row"] + dr, anchor["col"] + dc)
                and o["shape"] == expr["shape"]]
    keep = {"size_colour": lambda o: (o["size"], o["colour"]) == (expr["size"], expr["colour"]),
            "size_shape": lambda o: (o["size"], o["shape"]) == (expr["size"], expr["shape"]),
            "row": lambda o: (o["colour"], o["row"]) == (expr["colour"], expr["row"]),
            "not": lambda o: o["shape"] == expr["shape"] and o["colour"] != expr["colour"]}[k]
    return [i for i, o in enumerate(objs) if keep(o)]


@pytest.mark.parametrize("task", tasks_of("MiniRef"))
def test_ref_expression_picks_the_positive_crop(root, task):
    for s, row in zip(scenes(root, task), rows(root, task), strict=True):
        objs = objects(s["spec"]["scene"])
        target = s["spec"]["candidates"][0]
        assert resolve(s["spec"]["expression"], objs) == [target]
        assert len(row["tgt_img_path"]) == len(objs) == len(set(s["spec"]["candidates"]))
        if task.endswith("holdout"):
            assert (objs[target]["colour"], objs[target]["shape"]) in HOLDOUT_COMBOS


# ---- video ground truth -------------------------------------------------------------------------------------
def happenings(video: dict[str, Any]) -> list[tuple[int, str]]:
    """(start frame, what an observer sees) per event, subjects named as they look when the event begins."""
    objs, out = video["objects"], []
    state = {i: {"colour": o["colour"], "cell": (o["row"], o["col"])} for i, o in enumerate(objs)}
    for e in sorted(video["events"], key=lambda e: e["start"]):
        st, shape = state[e["obj"]], objs[e["obj"]]["shape"]
        subject = f"{st['colour']} {shape}"
        if e["kind"] == "move":
            to = tuple(e["to"])
            step = (int(to[0] > st["cell"][0]) - int(to[0] < st["cell"][0]),
                    int(to[1] > st["cell"][1]) - int(to[1] < st["cell"][1]))
            text = f"the {subject} moves {DIRS[step]}"
            st["cell"] = to
        elif e["kind"] == "recolour":
            text = f"the {subject} turns {e['to']}"
            st["colour"] = e["to"]
        else:
            text = f"{art(subject)} appears" if e["kind"] == "appear" else f"the {subject} disappears"
        out.append((e["start"], text))
    return out


def reverse(text: str) -> str:
    m = re.match(r"the (\w+) (\w+) turns (\w+)", text)
    if m:
        return f"the {m[3]} {m[2]} turns {m[1]}"
    swaps = {"left": "right", "right": "left", "up": "down", "down": "up"}
    if " moves " in text:
        head, d = text.rsplit(" ", 1)
        return f"{head} {swaps[d]}"
    subject = text.split(" ", 1)[1].rsplit(" ", 1)[0]
    return f"the {subject} disappears" if text.endswith("appears") and not text.endswith("disappears") \
        else f"{art(subject)} appears"


@pytest.mark.parametrize("task", ["MiniEvents"])
def test_video_class_labels(root, task):
    pool = set()
    for s, row in zip(scenes(root, task), rows(root, task), strict=True):
        video = s["spec"]["video"]
        [ev] = video["events"]
        [(_, text)] = happenings(video)
        shape = video["objects"][ev["obj"]]["shape"]
        phrase = {"appear": "appearing", "disappear": "disappearing", "recolour": "changing colour"}.get(
            ev["kind"], "moving " + text.rsplit(" ", 1)[-1])
        assert row["pos_text"] == f"{shape} {phrase}"
        pool.add(row["pos_text"])
    assert len(pool) > 1


def track_answer(video: dict[str, Any], qtype: str) -> str:
    objs, events = video["objects"], video["events"]
    [key_event] = [e for e in events if e["obj"] == 0]
    by_kind = {e["kind"]: objs[e["obj"]] for e in events}
    if qtype == "colour_moved":
        return by_kind["move"]["colour"]
    if qtype == "which_disappeared":
        return f"the {name(by_kind['disappear'])}"
    if qtype == "which_appeared":
        return f"the {name(by_kind['appear'])}"
    if qtype == "where_end":
        return CELL_NAMES[tuple(key_event["to"])]
    if qtype == "new_colour":
        return key_event["to"]
    if qtype == "count_end":
        return str(sum(not any(e["obj"] == i and e["kind"] == "disappear" for e in events) for i in range(len(objs))))
    return min(happenings(video))[1]


@pytest.mark.parametrize("task", tasks_of("MiniTrackQA"))
def test_track_qa_answers(root, task):
    for s, row in zip(scenes(root, task), rows(root, task), strict=True):
        video = s["spec"]["video"]
        assert row[f"a{row['answer']}"] == track_answer(video, row["type"])
        if task.endswith("holdout"):
            assert (video["objects"][0]["colour"], video["objects"][0]["shape"]) in HOLDOUT_COMBOS


def test_video_retrieval_captions_name_every_event(root):
    for s, row in zip(scenes(root, "MiniVidRet"), rows(root, "MiniVidRet"), strict=True):
        caption = row["caption"].lower()
        assert all(text in caption for _, text in happenings(s["spec"]["video"]))


def test_moment_positive_is_the_described_segment(root):
    for s, row in zip(scenes(root, "MiniMoment"), rows(root, "MiniMoment"), strict=True):
        seen = [text for _, text in happenings(s["spec"]["video"])]
        cands = s["spec"]["candidates"]
        assert cands[0] == {"name": "positive", "segment": s["spec"]["segment"], "reversed": False}
        assert seen[s["spec"]["segment"]] == row["query"] and row["video_path"] == f"vid{s['index']:05d}.mp4"
        views = [reverse(seen[c["segment"]]) if c["reversed"] else seen[c["segment"]] for c in cands]
        assert views.count(row["query"]) == 1


# ---- visdoc ground truth ----------------------------------------------------------------------------------
def doc_relevance(task: str, query: dict[str, Any], pages: dict[str, dict[str, Any]]) -> dict[str, int]:
    out = {}
    for cid, page in pages.items():
        if page["title"] != query["title"]:
            continue
        if task == "MiniDocReport":
            evidence = {"founded": "text", "units": "table", "revenue": "chart"}[query["type"]]
            out[cid] = 2 if page["kind"] == evidence else 1
            continue
        vals = dict(zip(page["items"], page["values"], strict=True))
        hit = {"max": vals[query["item"]] == max(page["values"]), "min": vals[query["item"]] == min(page["values"]),
               "value": vals[query["item"]] == query.get("value"),
               "compare": vals[query["item"]] > vals.get(query.get("other"), 10**9)}[query["type"]]
        if hit:
            out[cid] = 1
    return out


@pytest.mark.parametrize("task", ["MiniDocTable", "MiniDocReport"])
def test_qrels_rederived_from_page_specs(root, task):
    specs = scenes(root, task)
    pages = {cid: p for s in specs for cid, p in s["spec"]["pages"].items()}
    qrels: dict[str, dict[str, int]] = {}
    for r in visdoc(root, task, "qrels"):
        qrels.setdefault(r["query-id"], {})[r["corpus-id"]] = r["score"]
    for s in specs:
        assert doc_relevance(task, s["spec"]["query"], pages) == qrels[s["query-id"]]
    assert [q["query-id"] for q in visdoc(root, task, "queries")] == [s["query-id"] for s in specs]
    corpus = visdoc(root, task, "corpus")
    assert [c["corpus-id"] for c in corpus] == list(pages)
    for c in corpus:  # each page's PNG bytes show the page its spec describes
        drawn = render_page(Page(**pages[c["corpus-id"]]))
        assert Image.open(io.BytesIO(c["image"]["bytes"])).convert("RGB").tobytes() == drawn.tobytes()


# ---- training data ---------------------------------------------------------------------------------------
def test_sft_records_are_well_formed(root):
    records = json.loads((root / "train" / "sft.json").read_text())
    assert len(records) == 3 * len(BASE_TASKS)
    assert {r["source"] for r in records} == {t.name for t in BASE_TASKS}
    for r in records:
        assert set(r) == {"qry", "pos", "source"}
        for side in (r["qry"], r["pos"]):
            human, gpt = side["conversations"]
            assert (human["from"], gpt["from"]) == ("human", "gpt")
            assert FORMAT.match(gpt["value"]) and gpt["value"].endswith("</answer><gen_emb>")
            media = [k for k in ("image", "video") if k in side]
            assert set(side) == {"conversations", *media} and len(media) <= 1
            for kind in ("image", "video"):
                assert human["value"].count(f"<{kind}>") == (kind in media)
            if media == ["image"]:
                assert human["value"].startswith("<image>\n") and (root / side["image"]).is_file()
            if media == ["video"]:
                assert human["value"].startswith("<video>\n") and 1 <= len(side["video"]) <= 8
                assert all((root / f).is_file() for f in side["video"])
            assert "<disc_emb>" not in human["value"] and "<|image_1|>" not in human["value"]


def test_rl_records_are_well_formed(root):
    records = json.loads((root / "train" / "rl.json").read_text())
    assert len(records) == len(BASE_TASKS)
    for r in records:
        assert {"qry_text", "pos_text", "solution", "source"} <= set(r) and r["solution"]
        assert set(r) - {"qry_text", "pos_text", "solution", "source"} <= {"qry_image", "qry_video", "pos_image",
                                                                          "pos_video"}
        for side in ("qry", "pos"):
            assert not ({f"{side}_image", f"{side}_video"} <= set(r))
            if f"{side}_image" in r:
                assert (root / r[f"{side}_image"]).is_file()
            if f"{side}_video" in r:
                assert all((root / f).is_file() for f in r[f"{side}_video"])


def test_reasoning_is_not_one_template(root):
    records = json.loads((root / "train" / "sft.json").read_text())
    openings = {" ".join(r["qry"]["conversations"][1]["value"].split()[:3]) for r in records}
    assert len(openings) > len(BASE_TASKS)


# ---- hold-out and disjointness ------------------------------------------------------------------------
def combos_in(spec: Any) -> list[tuple[str, str]]:
    """Every (colour, shape) a spec can show: objects, recolour targets of videos, added objects."""
    out: list[tuple[str, str]] = []
    if isinstance(spec, dict):
        if "colour" in spec and "shape" in spec:
            out.append((spec["colour"], spec["shape"]))
        if "events" in spec:
            shapes = [o["shape"] for o in spec["objects"]]
            out += [(e["to"], shapes[e["obj"]]) for e in spec["events"] if e["kind"] == "recolour"]
        if spec.get("op") == "recolour":
            out.append((spec["to"], spec["target"][1]))
        for v in spec.values():
            out += combos_in(v)
    elif isinstance(spec, list):
        for v in spec:
            out += combos_in(v)
    return out


def object_lists(spec: Any) -> list[str]:
    """Canonical JSON of every scene / video / page in a spec (not of captions, which may recur), to compare
    train against eval."""
    if isinstance(spec, dict):
        scene = isinstance(spec.get("objects"), list) and all(isinstance(o, dict) for o in spec["objects"])
        own = [json.dumps(spec, sort_keys=True)] if (scene or {"title", "kind"} <= set(spec)) else []
        return own + [x for v in spec.values() for x in object_lists(v)]
    if isinstance(spec, list):
        return [x for v in spec for x in object_lists(v)]
    return []


def test_holdout_pairs_never_in_training_or_ordinary_eval(root):
    holdout = set(HOLDOUT_COMBOS)
    train = read_jsonl(root / "train" / "scenes.jsonl")
    assert len(train) == 4 * len(BASE_TASKS)
    assert not holdout & set(combos_in([s["spec"] for s in train]))
    for t in MINI_TASKS:
        specs = [s["spec"] for s in scenes(root, t.name)]
        if t.split == "eval":
            assert not holdout & set(combos_in(specs)), t.name
        else:
            assert all(holdout & set(combos_in(s)) for s in specs), t.name


def test_train_and_eval_scenes_are_disjoint(root):
    train = read_jsonl(root / "train" / "scenes.jsonl")
    evals = [s for t in MINI_TASKS for s in scenes(root, t.name)]
    assert {s["seed_key"][1] for s in train} == {2, 3} and {s["seed_key"][1] for s in evals} == {0, 1}
    train_scenes = {x for s in train for x in object_lists(s["spec"])}
    eval_scenes = {x for s in evals for x in object_lists(s["spec"])}
    assert train_scenes and eval_scenes and not train_scenes & eval_scenes
