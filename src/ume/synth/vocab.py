"""The closed vocabulary of MiniMMEB worlds: colours, shapes, sizes, grid cells, and the hold-out pairs.

Everything a generator may draw comes from these tuples (never from sets), so iteration order, and with
it every file the build writes, is fixed.
"""

from __future__ import annotations

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 165, 60),
    "blue": (45, 85, 225),
    "yellow": (235, 200, 25),
    "purple": (150, 60, 190),
    "orange": (245, 135, 30),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUND = (250, 250, 244)

# Words that never appear in a scene but make plausible wrong answers.
EXTRA_COLOURS: tuple[str, ...] = ("pink", "brown", "gray", "black")
EXTRA_SHAPES: tuple[str, ...] = ("star", "hexagon", "heart", "pentagon", "oval", "cross")
LETTERS: tuple[str, ...] = tuple("ABCDEFGHKMNPRSTUXZ")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# A 3x3 grid: row 0 is the top, column 0 the left.
CELLS: tuple[tuple[int, int], ...] = tuple((r, c) for r in range(3) for c in range(3))
CELL_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "centre", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}
ROW_NAMES: tuple[str, ...] = ("top", "middle", "bottom")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}

# Compositional hold-out: these (colour, shape) pairs never occur in any training scene (nor in the ordinary
# eval split); they appear only in the "-holdout" tasks. One per shape and colour, so every colour and every
# shape is still seen in training.
HOLDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"), ("green", "circle"), ("blue", "diamond"), ("yellow", "square"),
)
ALLOWED_COMBOS: tuple[tuple[str, str], ...] = tuple(
    (c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in HOLDOUT_COMBOS
)

# Document worlds.
DOC_ITEMS: tuple[str, ...] = (
    "Apples", "Pears", "Plums", "Figs", "Limes", "Kiwis", "Mangos", "Dates", "Grapes", "Melons",
    "Lemons", "Cherries",
)
DOC_TOPICS: tuple[str, ...] = (
    "Harbor Market", "North Farm", "Hill Orchard", "River Stall", "Bay Grocer", "Oak Depot", "Lake Shop",
    "Sun Traders", "Mill Co-op", "Park Kiosk", "Vale Store", "Cliff Mart", "Dune Foods", "Glen Fresh",
)
DOC_COMPANIES: tuple[str, ...] = (
    "Arlo", "Brisk", "Corvo", "Delta", "Ember", "Fjord", "Gala", "Helix", "Ivy", "Juno", "Kestrel", "Lumen",
    "Mako", "Nimbus", "Onyx", "Pico", "Quill", "Rook", "Sable", "Tango", "Umber", "Vesta", "Wren", "Xeno",
    "Yarrow", "Zephyr",
)
DOC_SECTORS: tuple[str, ...] = ("Foods", "Bikes", "Tools", "Paints", "Toys", "Lamps", "Boats", "Tiles")
DOC_CITIES: tuple[str, ...] = ("Oslo", "Lyon", "Porto", "Graz", "Turku", "Ghent", "Bern", "Cork", "Pisa", "Riga")
DOC_PRODUCTS: tuple[str, ...] = ("Alpha", "Beta", "Gamma", "Theta", "Omega", "Sigma", "Kappa", "Zeta")
