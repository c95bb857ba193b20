"""Video tasks: MiniEvents (CLS), MiniTrackQA (QA), MiniVidRet (RET) and MiniMoment (MRET).

All four are about change over time, which no single frame shows: which object moved and where it ended,
what appeared or vanished, what changed colour and in which order. A single pass must compare frames
implicitly; the trace states the first frame, then each change with its subject, then the answer.
MiniMoment's negatives include time-reversed clips, in which a move goes the other way, an appearance
becomes a disappearance and a colour change runs backwards, so direction in time must be read.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from ume.synth.example import Example, Media, Side, pick_negatives
from ume.synth.phrasing import Phraser, a, join_list, think
from ume.synth.rng import pick, shuffled
from ume.synth.scene import Obj, Policy, sample_scene
from ume.synth.tasks import VIDEO_TARGET, MiniTask
from ume.synth.video import (
    KINDS,
    Event,
    EventPlanner,
    Happening,
    Video,
    cell_name,
    end_cell,
    happening,
    policy_ok,
    render_video,
    state_at,
)
from ume.synth.vocab import CELL_NAMES, COLOUR_NAMES, EXTRA_COLOURS, SHAPES

CLS_PHRASES = {"appear": "appearing", "disappear": "disappearing", "recolour": "changing colour"}
SEGMENT = 4  # frames per MiniMoment segment


def _plan(rng: np.random.Generator, policy: Policy, n: int, kinds: list[str | None], n_frames: int,
          windows: list[tuple[int, int]]) -> Video | None:
    """A video whose object i (i < len(kinds)) undergoes kinds[i] in windows[i] (None: any possible kind)."""
    objs = sample_scene(rng, n, policy.key_combo(rng), unique_names=True)
    hidden = [i for i, k in enumerate(kinds) if k == "appear"]
    planner = EventPlanner(rng, objs, hidden)
    events = []
    for i, (kind, (start, end)) in enumerate(zip(kinds, windows, strict=True)):
        options = [k for k in planner.options(i) if k != "appear" or i in hidden]
        kind = kind if kind in options else (pick(rng, options) if kind is None and options else None)
        if kind is None:
            return None
        events.append(planner.make(i, kind, start, end))
    video = Video(objs, tuple(events), n_frames)
    return video if policy_ok(policy, video) else None


def _frames_media(video: Video, name: str) -> Media:
    return Media("video", name, lambda: render_video(video))


def _observe(p: Phraser, video: Video, events: list[Event]) -> list[str]:
    """First frame, then each change in time order, in 1-based frame numbers."""
    start = [pl.obj for pl in state_at(video, 0)]
    steps = [p.pick(["In the first frame: ", "At the start: ", "Frame 1 shows: "])
             + join_list([p.obj(o) for o in start]) + "."]
    for e in sorted(events, key=lambda e: e.start):
        h = happening(video, e)
        when = (f"from frame {e.start + 1} to frame {e.end + 1}" if e.kind == "move" else
                p.pick([f"at frame {e.start + 1}", f"around frame {e.start + 1}"]))
        detail = ""
        if e.kind == "move":
            o = video.objects[e.obj]
            detail = f" (from the {cell_name(_cell_before(video, e) or o.cell)} to the {cell_name(e.to)})"
        steps.append(f"{when} {h.text()}{detail}" if p.rng.random() < 0.5 else f"{h.text()} {when}{detail}")
    still = [video.objects[i] for i in range(len(video.objects)) if all(e.obj != i for e in events)]
    if still:
        steps.append(join_list([f"the {o.colour} {o.shape}" for o in still])
                     + p.pick([" does not change", " stays where it is"] if len(still) == 1 else
                              [" do not change", " stay where they are"]))
    return steps


def _cell_before(video: Video, event: Event) -> tuple[int, int] | None:
    moves = [e for e in video.events if e.obj == event.obj and e.kind == "move" and e.start < event.start]
    return tuple(max(moves, key=lambda e: e.start).to) if moves else None


# ---- MiniEvents (video classification, global pool of labels) ------------------------------------------
def event_label(h: Happening) -> str:
    return f"{h.shape} moving {h.detail}" if h.kind == "move" else f"{h.shape} {CLS_PHRASES[h.kind]}"


def events_cls(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    video = None
    while video is None:
        video = _plan(rng, policy, int(rng.integers(2, 5)), [pick(rng, KINDS)], 8, [(2, 5)])
    ev = video.events[0]
    h = happening(video, ev)
    label = event_label(h)
    p = Phraser(rng)
    q_think = think(*_observe(p, video, [ev]), p.conclude(f"the video shows a {label.replace(' ', ' that is ', 1)}"))
    meaning = {"move": f"slides {h.detail}", "appear": "comes into view", "disappear": "vanishes",
               "recolour": "changes its colour"}[h.kind]
    pos_think = think(p.pick([f"The class '{label}' means a {h.shape} that {meaning} during the video.",
                              f"This category is about one {h.shape} which {meaning} while the video plays."]))
    return Example(
        spec={"video": video.spec(), "label": label},
        query=Side(task.instruction, "", _frames_media(video, "q"), q_think, f"{label}: {h.text()}."),
        positive=Side("", label, None, pos_think, label),
    )


# ---- MiniTrackQA (nextqa rows, 5 options) ----------------------------------------------------------------
QA_KINDS: dict[str, tuple[str | None, str | None]] = {
    # qtype: (kind of the key object's event, excluded kind for the other event)
    "colour_moved": ("move", "move"), "which_disappeared": ("disappear", "disappear"),
    "which_appeared": ("appear", "appear"), "where_end": ("move", None), "new_colour": ("recolour", None),
    "count_end": (None, None), "first_event": (None, None),
}


def _name(o: Obj) -> str:
    return f"the {o.colour} {o.shape}"


def _qa(rng: np.random.Generator, video: Video, qtype: str) -> tuple[str, str, list[str]]:
    """(question, answer, hard wrong options) about the key object 0."""
    key = video.objects[0]
    ev = next(e for e in video.events if e.obj == 0)
    names = [_name(o) for o in video.objects]
    if qtype == "colour_moved":
        return "What colour is the object that moved?", key.colour, [o.colour for o in video.objects[1:]]
    if qtype in ("which_disappeared", "which_appeared"):
        verb = "disappeared" if qtype == "which_disappeared" else "appeared"
        return f"Which object {verb}?", names[0], names[1:]
    if qtype == "where_end":
        return (f"Where is the {key.colour} {key.shape} at the end of the video?", cell_name(end_cell(video, 0)),
                [cell_name(key.cell)])
    if qtype == "new_colour":
        return f"What colour does the {key.colour} {key.shape} turn into?", ev.to, [key.colour]
    if qtype == "count_end":
        n_end = len(state_at(video, video.n_frames - 1))
        n_start = len(state_at(video, 0))
        return "How many objects are visible at the end of the video?", str(n_end), [str(n_start)]
    first, second = sorted(video.events, key=lambda e: e.start)
    h1, h2 = happening(video, first), happening(video, second)
    return "What happens first in the video?", h1.text(), [h2.text(), h1.reversed().text(), h2.reversed().text()]


def _qa_fill(rng: np.random.Generator, qtype: str) -> str:
    if qtype in ("colour_moved", "new_colour"):
        return pick(rng, COLOUR_NAMES + EXTRA_COLOURS)
    if qtype in ("which_disappeared", "which_appeared"):
        return f"the {pick(rng, COLOUR_NAMES)} {pick(rng, SHAPES)}"
    if qtype == "where_end":
        return pick(rng, list(CELL_NAMES.values()))
    if qtype == "count_end":
        return str(int(rng.integers(0, 6)))
    return Happening(pick(rng, ("appear", "disappear")), pick(rng, COLOUR_NAMES), pick(rng, SHAPES)).text()


def qa_block(question: str, options: list[str]) -> str:
    """NExT-QA's `qa_template`: the question, then one "(A) option" line per option."""
    lines = [f"({chr(ord('A') + i)}) {o}" for i, o in enumerate(options)]
    return f"{question}\nOptions:\n" + "\n".join(lines)


def track_qa(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    qtype = pick(rng, list(QA_KINDS))
    key_kind, other_not = QA_KINDS[qtype]
    windows = [(1, 3), (4, 6)] if rng.random() < 0.5 else [(4, 6), (1, 3)]
    video = None
    while video is None:
        other = pick(rng, [k for k in KINDS if k != other_not])
        video = _plan(rng, policy, int(rng.integers(3, 5)), [key_kind, other], 8, windows)
    question, ans, hard = _qa(rng, video, qtype)
    wrong = pick_negatives(rng, ans, hard, 4, fill=lambda: _qa_fill(rng, qtype))
    options = shuffled(rng, [ans, *wrong])
    idx = options.index(ans)
    p = Phraser(rng)
    q_think = think(*_observe(p, video, list(video.events)),
                    p.conclude(f"the answer to '{question}' is {ans}"))
    pos_think = think(p.pick([f"The candidate answer is '{ans}'.", f"This option reads '{ans}'."]),
                      p.pick(["It is a short answer about what happens in a video.",
                              "It would answer a question about the objects of a clip."]))
    return Example(
        spec={"video": video.spec(), "question": {"type": qtype, "text": question}, "options": options,
              "answer": idx},
        query=Side(task.instruction.strip(), qa_block(question, options), _frames_media(video, "q"), q_think,
                   f"{question} Answer: {ans}."),
        positive=Side("", ans, None, pos_think, ans),
        negatives=[Side("", o) for o in options if o != ans],
        extra={"question": question, "options": options, "answer": idx, "type": qtype},
    )


# ---- MiniVidRet (msrvtt rows, global pool of videos) ------------------------------------------------------
def video_caption(p: Phraser, video: Video) -> str:
    changes = [happening(video, e).text() for e in sorted(video.events, key=lambda e: e.start)]
    text = p.pick([" and then ", ", after that ", " before "]).join(changes) if len(changes) > 1 else changes[0]
    still = [video.objects[i] for i in range(len(video.objects)) if all(e.obj != i for e in video.events)]
    if still:
        text += p.pick([" while ", "; meanwhile "]) + join_list([a(f"{o.colour} {o.shape}") for o in still]) + (
            " stays still" if len(still) == 1 else " stay still")
    return text[:1].upper() + text[1:]


def caption_key(video: Video) -> tuple[Any, ...]:
    """What a caption pins down; two videos with the same key would make two right answers."""
    changes = tuple(happening(video, e) for e in sorted(video.events, key=lambda e: e.start))
    still = tuple(sorted(video.objects[i].combo for i in range(len(video.objects))
                         if all(e.obj != i for e in video.events)))
    return (changes, still)


def vid_ret(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    video = None
    while video is None:
        n_events = int(rng.integers(1, 3))
        kinds: list[str | None] = [pick(rng, KINDS) for _ in range(n_events)]
        video = _plan(rng, policy, int(rng.integers(n_events + 1, 4)), kinds, 8, [(1, 3), (4, 6)][:n_events])
    p = Phraser(rng)
    caption = video_caption(p, video)
    q_think = think(p.pick(["The description asks for a video in which ", "I need a clip where "]) + caption[:1].lower()
                    + caption[1:] + ".", p.pick(["Which object does what matters, and in which order.",
                                                 "Each change has to happen to the named object."]))
    pos_think = think(*_observe(p, video, list(video.events)))
    summary = caption + "."
    return Example(
        spec={"video": video.spec(), "caption": caption},
        query=Side(task.instruction, caption, None, q_think, summary),
        positive=Side(VIDEO_TARGET, "", _frames_media(video, "v"), pos_think, summary),
        extra={"unique": caption_key(video)},
    )


# ---- MiniMoment (moment retrieval: full video + clip directories) ------------------------------------------
def moment(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    n_seg = 4
    while True:
        video = _moment_video(rng, policy, n_seg)
        if video is None:
            continue
        events = sorted(video.events, key=lambda e: e.start)
        seen = [happening(video, e) for e in events]
        target = int(rng.integers(n_seg))
        clips = [(k, False) for k in range(n_seg)] + [(k, True) for k in range(n_seg)]
        views = [seen[k].reversed() if rev else seen[k] for k, rev in clips]
        if sum(v == seen[target] for v in views) == 1:
            break
    order = [(target, False), *shuffled(rng, [c for c in clips if c != (target, False)])]

    @cache
    def frames() -> list[Image.Image]:
        return render_video(video)

    def clip(k: int, rev: bool) -> list[Image.Image]:
        part = frames()[k * SEGMENT:(k + 1) * SEGMENT]
        return part[::-1] if rev else part

    p = Phraser(rng)
    query = seen[target].text()
    parts = [f"Part {k + 1}: {seen[k].text()}" for k in range(n_seg)]
    q_think = think(p.pick([f"The video has {n_seg} parts. ", "Splitting the video into its parts. "])
                    + "; ".join(parts) + ".", p.conclude(f"'{query}' is part {target + 1}"))
    pos_think = think(p.pick(["In this clip ", "Over these frames "]) + query + ".",
                      p.pick(["Nothing else changes.", "It is one short event."]))
    names = ["positive"] + [f"negative_{i + 1}" for i in range(len(order) - 1)]
    sides = [Side(VIDEO_TARGET, "", Media("video", name, (lambda k=k, rev=rev: clip(k, rev))))
             for name, (k, rev) in zip(names, order, strict=True)]
    positive = sides[0]
    positive.think, positive.answer = pos_think, query[:1].upper() + query[1:] + "."
    return Example(
        spec={"video": video.spec(), "segment": target, "query": query,
              "candidates": [{"name": n, "segment": k, "reversed": rev} for n, (k, rev) in zip(names, order,
                                                                                              strict=True)]},
        query=Side(task.instruction, query, Media("video", "query", frames), q_think, positive.answer),
        positive=positive,
        negatives=sides[1:],
    )


def _moment_video(rng: np.random.Generator, policy: Policy, n_seg: int) -> Video | None:
    """n_seg segments of SEGMENT frames, one event each, on objects drawn as the video unfolds."""
    n = int(rng.integers(3, 5))
    objs = sample_scene(rng, n, policy.key_combo(rng), unique_names=True)
    hidden = [n - 1] if rng.random() < 0.5 else []
    planner = EventPlanner(rng, objs, hidden)
    events = []
    for k in range(n_seg):
        choices = [(i, kind) for i in range(n) for kind in planner.options(i)]
        if not choices:
            return None
        i, kind = pick(rng, choices)
        events.append(planner.make(i, kind, k * SEGMENT, k * SEGMENT + SEGMENT - 1))
    video = Video(objs, tuple(events), n_seg * SEGMENT)
    return video if policy_ok(policy, video) else None
