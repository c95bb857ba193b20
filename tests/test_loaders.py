"""MMEB-V2 loaders on the published repo layouts (tests/mmeb_fixture.py), against the reference's rules.

Expected strings are written out by hand from the reference loaders (TIGER-AI-Lab/VLM2Vec
`src/data/eval_dataset/*.py`, cited per test), never produced by ume's own code.
"""

import csv
import hashlib
import shutil
from pathlib import Path

import pytest

from ume.evaluate.loaders import LoadContext, LoaderError, load_task
from ume.evaluate.sources import Sources
from ume.evaluate.tasks import QA_PROMPT, TaskMeta, select_tasks

MEDIA = "TIGER-Lab/MMEB-V2"
SPEC_COPY = Path(__file__).parent / "spec" / "mmeb-v2-tasks.csv"  # shared/spec/mmeb-v2-tasks.csv, as given
SPEC_SHA256 = "a0a3673661353c72d50eb514f23e97ff940411252c89707229d08708236b6648"


def task(name: str) -> TaskMeta:
    return select_tasks([name])[0]


def frames_of(root: Path, rel: str) -> list[str]:
    return sorted(str(p) for p in (root / MEDIA / "video-tasks/frames" / rel).iterdir())


def test_registry_matches_the_spec_csv():
    tasks = select_tasks(benchmark="mmeb-v2")
    assert len(tasks) == 78
    assert len(select_tasks(benchmark="mmeb-v2-image")) == 36
    assert len(select_tasks(benchmark="mmeb-v2-video")) == 18
    assert len(select_tasks(benchmark="mmeb-v2-visdoc")) == 24
    # the typed registry says what the spec's CSV says, field by field (the copy is checked byte for byte below)
    rows = {r["task"]: r for r in csv.DictReader(SPEC_COPY.read_text(encoding="utf-8").splitlines())}
    assert list(rows) == [t.name for t in tasks]
    for t in tasks:
        row = rows[t.name]
        notes = dict(kv.split("=", 1) for kv in row["notes"].split("; ") if "=" in kv)
        path = t.source + (f" [subset={t.subset}, split={t.split}]" if t.subset else f" [split={t.split}]")
        assert row["hf_path"] == path, t.name
        assert (row["modality"], row["meta_task"].split(" (")[0], row["loader"], row["metric"]) == (
            t.modality, t.meta_task, t.loader, t.metric), t.name
        assert notes["eval_type"] == t.ranking, t.name
        queries = notes.get("queries", "").split()
        assert t.n_queries == (int(queries[0]) if queries and queries[0].isdigit() else None), t.name
    k700 = task("K700")
    assert (k700.ranking, k700.metric, k700.meta_task) == ("global", "hit@1", "CLS")
    assert (k700.source, k700.frames, k700.label_set) == ("VLM2Vec/Kinetics-700", "video_cls/K700", "Kinetics-700")
    assert task("SmthSmthV2").frames == "video_cls/SSv2" and task("SmthSmthV2").max_rows == 1000  # video.yaml
    assert task("Charades-STA").frames == "video_mret/Charades_STA"
    assert (task("YouCook2").source, task("YouCook2").split) == ("lmms-lab/YouCook2", "val")
    assert (task("NExTQA").subset, task("EgoSchema").subset, task("MSR-VTT").subset) == ("MC", "Subset", "test_1k")
    assert len(task("MVBench").configs) == 20 and task("MVBench").split == "train"
    assert task("Breakfast").instruction.endswith("video. ")  # the trailing space is part of the prompt
    assert task("ViDoRe_arxivqa").metric == "ndcg_linear@5" and task("CIRR").ranking == "local"
    assert task("VisRAG_ChartQA").split == "train"
    mret = select_tasks(benchmark="mmeb-v2", meta_task="video/MRET")
    assert [t.name for t in mret] == ["QVHighlight", "Charades-STA", "MomentSeeker"]
    with pytest.raises(ValueError, match="unknown task"):
        select_tasks(["NoSuchTask"])


def test_the_spec_copy_is_the_spec():
    assert hashlib.sha256(SPEC_COPY.read_bytes()).hexdigest() == SPEC_SHA256  # checked on a clean clone too
    spec = Path(__file__).resolve().parents[2] / "shared" / "spec" / "mmeb-v2-tasks.csv"
    if spec.exists():  # where the project's shared/ folder is present, the pinned hash is the spec's own
        assert spec.read_bytes() == SPEC_COPY.read_bytes()


def test_every_task_loads_from_the_published_layout_with_no_row_error(mmeb_root):
    for t in select_tasks(benchmark="mmeb-v2"):
        data = load_task(t, mmeb_root)
        assert data.queries and not data.errors, (t.name, data.errors[:2])
        assert all(r["repo"] == t.source and r["rows"] > 0 for r in data.provenance), t.name
        for q in data.queries:  # every label is a candidate the query is ranked against
            names = q.cand_names if q.cand_names is not None else list(data.pool)
            assert set(q.labels) <= set(names), t.name


def test_image_cls_and_i2t_strings(mmeb_root):
    # image_cls_dataset.py:17-20: inst without <|image_1|>, process_input_text(inst, text, image), then
    # .replace(" \n", "\n") + "\n"; candidates are the raw tgt_text, label tgt_text[0]
    data = load_task(task("ImageNet-1K"), mmeb_root)
    q = data.queries[0]
    assert q.item.text == "<|image_pad|>  Represent the given image for classification\n\n"
    assert q.item.images == [str(mmeb_root / MEDIA / "image-tasks/ImageNet-1K/q_0.jpg")]
    assert q.cand_names == ["ImageNet-1K label 0", "ImageNet-1K other 0", "ImageNet-1K third"]
    assert q.labels == ["ImageNet-1K label 0"]
    assert list(data.pool)[:4] == ["ImageNet-1K label 0", "ImageNet-1K other 0", "ImageNet-1K third",
                                   "ImageNet-1K label 1"]  # deduplicated by name, first occurrence wins
    assert data.pool["ImageNet-1K third"].images == []
    i2t = load_task(task("MSCOCO_i2t"), mmeb_root).queries[0]
    assert i2t.item.text == "<|image_pad|>  Find an image caption describing the given everyday image.\n\n"


def test_image_qa_replaces_space_newline_in_the_whole_query(mmeb_root):
    # image_qa_dataset.py:17-20: "\n" + inst.strip(); the " \n" rule applies to the assembled query, so the
    # question's own " \n" becomes "\n"
    q = load_task(task("ChartQA"), mmeb_root).queries[0]
    assert q.item.text == ("<|image_pad|>\nRepresent the given image with the following question: "
                           "What is in picture 0?\n\n")


def test_image_t2i_names_are_paths_and_captions_follow_the_first(mmeb_root):
    # image_t2i_eval.py:18-19 (query), 27-38 (candidates), 45 (names = tgt_img_path)
    data = load_task(task("MSCOCO_t2i"), mmeb_root)
    q = data.queries[0]
    assert q.item.text == "Find me an everyday image that matches the given caption: A scene number 0.\n"
    assert q.item.images == []  # t2i queries are text only
    assert q.cand_names == ["MSCOCO_t2i/t0_0.jpg", "MSCOCO_t2i/t1_0.jpg", "MSCOCO_t2i/t2_0.jpg"]
    # tgt_inst "<|image_1|> Represent..." loses its token but keeps the space: two spaces after the pad token
    assert data.pool["MSCOCO_t2i/t0_0.jpg"].text == "<|image_pad|>  Represent the given image.\n"
    visdial = load_task(task("VisDial"), mmeb_root).queries[0]
    assert visdial.item.text.endswith("A scene number 0.\n\n")  # VisDial's extra newline
    edis = load_task(task("EDIS"), mmeb_root)  # two parquet shards; captions are part of the candidates
    assert len(edis.queries) == 2 and sum(r["rows"] for r in edis.provenance) == 2
    assert len(edis.provenance[0]["files"]) == 2
    assert edis.pool["EDIS/t1_0.jpg"].text == "<|image_pad|>  Represent the given image. caption 1 of EDIS\n"


def test_image_i2i_vg_names_are_path_and_caption(mmeb_root):
    # image_i2i_vg_dataset.py:36-38: no caption -> no trailing "\n"; :45 names = path + ":" + cap.strip('"')
    data = load_task(task("CIRR"), mmeb_root)
    q = data.queries[0]
    assert q.item.text == ("<|image_pad|>\nGiven an image, find a similar everyday image with the described "
                           "changes: make it brighter 0\n")
    assert q.cand_names[0] == "CIRR/t0_0.jpg:" and q.labels == ["CIRR/t0_0.jpg:"]
    assert data.pool["CIRR/t0_0.jpg:"].text == "<|image_pad|>  Represent the given image.\n"  # the row's own "\n"
    ref = load_task(task("RefCOCO-Matching"), mmeb_root).queries[0]
    assert ref.cand_names == ["RefCOCO-Matching/t_0.jpg:the left one", "RefCOCO-Matching/t_0.jpg:the middle one",
                              "RefCOCO-Matching/t_0.jpg:the right one"]  # one image, three objects


def test_video_classification_pool_is_the_full_label_list(mmeb_root):
    # video_classification_datasets.py: corpus = every label of VIDEOCLS_LABEL_MAPPING[task]; the query is
    # process_input_text(instruction, add_video_token=True) + 8 frames (all of them when fewer)
    data = load_task(task("K700"), mmeb_root)
    assert len(data.pool) == 700 and list(data.pool)[:2] == ["waiting_in_line", "fly_tying"]
    q0, q1 = data.queries
    assert q0.item.text == "<|video_pad|> Recognize the category of the video content."
    frames12 = frames_of(mmeb_root, "video_cls/K700/k700_0")
    assert q0.item.video == [frames12[i] for i in (0, 1, 3, 4, 6, 7, 9, 11)]  # linspace(0, 11, 8).astype(int)
    assert len(q1.item.video) == 5  # 5 frames: all of them
    assert len(load_task(task("HMDB51"), mmeb_root).pool) == 51
    assert len(load_task(task("UCF101"), mmeb_root).pool) == 101
    assert len(load_task(task("Breakfast"), mmeb_root).pool) == 10
    assert load_task(task("Breakfast"), mmeb_root).queries[0].item.text.endswith("in the video. ")


def test_ssv2_reads_its_first_1000_rows_from_the_ssv2_frame_directory(mmeb_root):
    data = load_task(task("SmthSmthV2"), mmeb_root)
    assert len(data.queries) == 1000 and not data.errors  # row 1000 (no frames) is never read
    assert data.provenance[0]["rows"] == 1000 and data.provenance[0]["max_rows"] == 1000
    q = data.queries[0]
    assert q.cand_names == ["Closing something", "Opening something", "Pushing something"]
    assert q.item.video[0].startswith(str(mmeb_root / MEDIA / "video-tasks/frames/video_cls/SSv2/100/"))


def test_video_retrieval_names_and_splits(mmeb_root):
    msrvtt = load_task(task("MSR-VTT"), mmeb_root)  # config test_1k -> msrvtt_test_1k.json (a JSON array)
    assert [q.labels for q in msrvtt.queries] == [["video7020"], ["video7021"]]
    assert msrvtt.queries[0].item.text == "Find a video that contains the following visual content: a man sings 0"
    assert msrvtt.pool["video7020"].text == "<|video_pad|> Understand the content of the provided video."
    msvd = load_task(task("MSVD"), mmeb_root)  # root msvd_test.json; the first caption of the list
    assert msvd.queries[0].item.text.endswith("summary: two men play table tennis 0")
    didemo = load_task(task("DiDeMo"), mmeb_root)  # the stem of `video`; raw_data/ is not read (README configs)
    assert list(didemo.pool) == ["10015567@N08_3655084290_d8b58466fa", "10015567@N08_3655084291_d8b58466fa"]
    youcook = load_task(task("YouCook2"), mmeb_root)  # split val, not test
    assert [q.labels[0] for q in youcook.queries] == ["val_0", "val_1", "val_2"]
    vatex = load_task(task("VATEX"), mmeb_root)  # the repo's only config, vatex_test
    assert vatex.queries[0].item.text == "Select a video that fits the description provided: a woman cooks 0"


def test_video_qa_strings(mmeb_root):
    prompt = f"<|video_pad|> {QA_PROMPT} "  # process_query: f"{token} {prompt} {query}"; the prompt ends in " "
    assert "Question:  " in prompt  # the double space the reference produces
    nextqa = load_task(task("NExTQA"), mmeb_root).queries[1]  # nextqa_dataset.py: qa_template over a0..a4
    assert nextqa.item.text == (prompt + "why did the boy run 1\nOptions:\n(A) option 0\n(B) option 1\n"
                                "(C) option 2\n(D) option 3\n(E) option 4")
    assert nextqa.labels == ["option 1"] and nextqa.cand_names == [f"option {j}" for j in range(5)]
    assert Path(nextqa.item.video[0]).name == "0000.jpeg"
    mme = load_task(task("Video-MME"), mmeb_root)  # videomme_dataset.py: names = options, texts stripped
    q = mme.queries[0]
    assert q.item.text == prompt + "How many people appear 0?\nA. 1.\nB. 2.\nC. 3.\nD. 4."
    assert q.cand_names == ["A. 1.", "B. 2.", "C. 3.", "D. 4."] and q.labels == ["B. 2."]
    assert mme.pool["A. 1."].text == "1"  # o[o.find('. '):].strip('. ')
    ego = load_task(task("EgoSchema"), mmeb_root)  # egoschema_dataset.py: no separator after the question
    q = ego.queries[1]
    assert q.item.text == prompt + "What is C doing 1?A. cooking. B. cleaning. C. reading D. writing. E. sleeping."
    assert q.cand_names[0] == "A. cooking." and q.labels == ["B. cleaning."]  # full options: names and label
    assert ego.pool["C. reading"].text == "reading"
    mvb = load_task(task("MVBench"), mmeb_root)  # 20 configs, "(A) " kept, frames at <subset>/<video>
    assert len(mvb.queries) == 20 and len(mvb.provenance) == 20
    q = mvb.queries[0]
    assert q.labels == ["(B) it stops"] and q.cand_names == ["(A) it moves", "(B) it stops", "(C) it spins"]
    assert "/video_qa/MVBench/episodic_reasoning/episodic_reasoning_clip.mp4/" in q.item.video[0]
    anet = load_task(task("ActivityNetQA"), mmeb_root).queries[1]  # frames at v_<video_name>
    assert anet.item.text == prompt + "is he outdoors 1? (A) yes; (B) no." and anet.labels == ["no"]
    assert "/video_qa/ActivityNetQA/v_OtWlsnsj41/" in anet.item.video[0]


def test_moment_retrieval(mmeb_root):
    # moment_retrieval_datasets.py: frames of <stem of video_path>/query; every other sub-directory is a clip,
    # files are skipped; the clip whose name starts with "positive" is the label
    for name in ("QVHighlight", "Charades-STA"):
        data = load_task(task(name), mmeb_root)
        q = data.queries[0]
        assert q.item.text == ("<|video_pad|> Find the clip that corresponds to the described scene in the given "
                               "video: a person opens the door 0")
        assert q.cand_names == ["AO8RW_0/negative_clip_0", "AO8RW_0/negative_clip_1", "AO8RW_0/positive_clip"]
        assert q.labels == ["AO8RW_0/positive_clip"] and len(q.item.video) == 8


def test_momentseeker_three_query_types_and_several_positives(mmeb_root):
    # momentseeker_dataset.py: TASK_INST_QRY_{TEXT,IMG,VIDEO}; clips at video_frames/<output_path "/"->"_">;
    # label_name is the list of positives; frames are not resampled
    data = load_task(task("MomentSeeker"), mmeb_root)
    text_q, image_q, video_q = data.queries
    assert text_q.item.text == "Find the clip that corresponds to the given text: the person picks up a cup 0"
    assert text_q.item.images == [] and text_q.item.video is None
    assert image_q.item.text == ("<|image_pad|> Select the video clip that aligns with the given text and image: "
                                 "the person picks up a cup 1")
    assert image_q.item.images[0].endswith("MomentSeeker/query_images/movie101_77/frame_173.jpg")
    assert video_q.item.text.startswith("<|video_pad|> Find the clip that corresponds to the given sentence and ")
    assert len(video_q.item.video) == 6
    assert text_q.labels == ["videos_ego_19_334.00_338.00", "videos_ego_19_340.00_344.00"]
    assert text_q.cand_names == [*text_q.labels, "videos_ego_19_00.00_04.00"]
    cand = data.pool["videos_ego_19_334.00_338.00"]
    assert cand.text == "<|video_pad|> Understand the content of the provided video clip." and len(cand.video) == 4


def test_visdoc_protocols_qrels_and_pool_order(mmeb_root):
    # vidore_dataset.py: qrels score > 0, max over duplicate pairs; the pool is each query's relevant pages
    # (query order) then the corpus; UME-R1's vidore loader uses no instruction on either side
    t = task("ViDoRe_arxivqa")
    data = load_task(t, mmeb_root)
    q0 = data.queries[0]
    assert q0.item.text == " What does page 0 say?"  # process_input_text("", text=query)
    assert q0.labels == ["1000", "1003"] and q0.rel_scores == [1, 1]  # ids as strings, float scores to int
    assert list(data.pool) == ["1000", "1003", "1001", "1002", "1004"]
    assert data.pool["1000"].text == "<|image_pad|> " and isinstance(data.pool["1000"].images[0], bytes)
    vlm2vec = load_task(t, LoadContext(Sources(mmeb_root), protocol="vlm2vec")).queries[0]
    assert vlm2vec.item.text == "Find a document image that matches the given query: What does page 0 say?"
    graded = load_task(task("ViDoRe_esg_reports_human_labeled_v2"), mmeb_root).queries[0]
    assert graded.rel_scores == [2, 1]
    multilingual = load_task(task("ViDoRe_economics_reports_v2_multilingual"), mmeb_root)
    assert len(multilingual.queries) == 3  # every language kept
    visrag = load_task(task("VisRAG_ArxivQA"), mmeb_root)  # three corpus shards, string ids, VLM2Vec strings
    assert len(visrag.provenance[0]["files"]) == 3 and len(visrag.pool) == 5
    assert visrag.queries[0].item.text.startswith("Find a document image that matches the given query: ")
    assert visrag.pool[visrag.queries[0].labels[0]].text == (
        "<|image_pad|> Understand the content of the provided document image.")
    chartqa = load_task(task("VisRAG_ChartQA"), mmeb_root)  # the stray qrels .tsv is not a data file
    assert all(f["file"].endswith(".parquet") for r in chartqa.provenance for f in r["files"])


def test_visdoc_bad_rows_are_reported_and_the_task_goes_on(mmeb_root, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "root"
    shutil.copytree(mmeb_root / "vidore/tabfquad_test_subsampled_beir", root / "vidore/tabfquad_test_subsampled_beir")
    qrels = root / "vidore/tabfquad_test_subsampled_beir/qrels/test-00000-of-00001.parquet"
    rows = pq.read_table(qrels).to_pylist()
    rows.append({"query-id": 2, "corpus-id": 77, "score": 1})  # a relevant page that is not in the corpus
    pq.write_table(pa.Table.from_pylist(rows), qrels)
    queries = root / "vidore/tabfquad_test_subsampled_beir/queries/test-00000-of-00001.parquet"
    qrows = [*pq.read_table(queries).to_pylist(), {"query-id": 9, "query": "no qrels for me"}]
    pq.write_table(pa.Table.from_pylist(qrows), queries)
    data = load_task(task("ViDoRe_tabfquad"), root)
    assert len(data.queries) == 2
    reasons = [e["reason"] for e in data.errors]
    assert any("'2'" in r and "not in the corpus" in r for r in reasons)
    assert any("'9'" in r and "no relevant document" in r for r in reasons)


def test_a_missing_repo_names_the_path_and_the_download_command(tmp_path):
    with pytest.raises(LoaderError) as e:
        load_task(task("HMDB51"), tmp_path)
    assert str(tmp_path / "VLM2Vec/HMDB51") in str(e.value)
    assert "huggingface-cli download VLM2Vec/HMDB51 --repo-type dataset --local-dir" in str(e.value)


def test_a_missing_frame_directory_is_a_row_error(mmeb_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(mmeb_root / "VLM2Vec/UCF101", root / "VLM2Vec/UCF101")
    shutil.copytree(mmeb_root / MEDIA / "video-tasks/frames/video_cls/UCF101",
                    root / MEDIA / "video-tasks/frames/video_cls/UCF101")
    shutil.rmtree(root / MEDIA / "video-tasks/frames/video_cls/UCF101/ucf101_1")
    data = load_task(task("UCF101"), root)
    assert len(data.queries) == 1
    assert "row 1" in data.errors[0]["reason"] and "frame directory not found" in data.errors[0]["reason"]


def test_packed_media_say_how_to_unpack(mmeb_root, tmp_path):
    from mmeb_fixture import pack_media

    root = tmp_path / "root"
    shutil.copytree(mmeb_root / "VLM2Vec/HMDB51", root / "VLM2Vec/HMDB51")
    pack_media(mmeb_root / MEDIA, root / MEDIA)
    with pytest.raises(LoaderError, match=r"not unpacked; run `ume data unpack"):
        load_task(task("HMDB51"), root)
