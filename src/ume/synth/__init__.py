"""MiniMMEB: a procedurally generated, MMEB-V2-shaped benchmark and training set that runs on a CPU.

`ume synth build OUT --seed N --scale tiny|small|full` writes, with no downloads and byte for byte the same
for the same seed, eighteen eval tasks in MMEB-V2's own on-disk layouts (docs/data-layout.md) plus SFT
and RL pairs in UME-R1's formats; `ume synth preview OUT` draws a contact sheet. Task metadata is
`ume.synth.tasks.MINI_TASKS`; the full description is docs/minimmeb.md.

Why thinking should help. Most tasks are built so that the answer is a function of several parts of the
input that must be combined in order, while the negatives share every surface feature with the positive:

- counting and comparing (MiniMajority: the most common colour and how many of how many; MiniCount_i2t:
  counts per colour-and-shape group; MiniVQA: objects left of / in the row of a named object);
- binding attributes to objects (MiniCaps_t2i: negatives swap colours, shapes, sizes or positions between
  the described objects; MiniRef: "the small red object" next to a large red one);
- following a relation from an anchor (MiniVQA, MiniRef: "the circle directly below the blue square");
- applying an edit the query only describes (MiniEdit: the target scene is never shown);
- tracking change over time (MiniEvents, MiniTrackQA, MiniVidRet, MiniMoment: which object moved where,
  what appeared, in which order; MiniMoment adds time-reversed clips as negatives);
- reading values off a table or chart (MiniDocTable: four sheets with the same title and items differ only
  in their numbers).

One forward pass has to do all of these at once inside a single embedding; the reasoning traces in the
training data do them one step at a time (list the objects, tally, locate the anchor, apply the edit,
compare the values) and end in a summary that states the deciding fact, which is what the generative
embedding is read after. MiniShapes (one object) and MiniDocReport (a title-and-topic lookup) are the
controls that need no such steps. Five "-holdout" tasks put (colour, shape) pairs that no training scene
ever shows on their key objects, to test compositional generalisation.
"""
