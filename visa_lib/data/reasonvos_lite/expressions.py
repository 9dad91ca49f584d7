"""The expressions of ReasonVOS-lite: templates, the bounded vocabulary, and how a query is resolved.

An expression is kept only when it picks exactly its intended object(s): every candidate text is
resolved against *all* objects of the video, and a text that two constructions would resolve
differently is dropped (see :func:`candidate_expressions`). :mod:`.generator` renders
the videos and calls this module to describe them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from visa_lib.data.reasonvos_lite import sprites as sp

HEIGHT, WIDTH = 240, 320

# ------------------------------------------------------------------------------------------------ templates

#: Every expression pattern, by kind. Placeholders: {desc} an object description ("cat", "red square",
#: or "object" for the video-wide variants), {descs} its plural, {dir} left/right/up/down,
#: {side} "on the left", "on the right", "at the top" or "at the bottom".
EXPRESSION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "name": ("the {desc}",),
    "plural": ("the {descs}", "all the {descs}"),
    "motion": ("the {desc} moving {dir}", "the {desc} that moves {dir}"),
    "position": ("the {desc} {side}",),
    "small": ("the small {desc}", "the smaller {desc}"),
    "big": ("the big {desc}", "the bigger {desc}"),
    "still": ("the {desc} that stays still", "the {desc} that does not move"),
    "leaves_first": ("which object leaves the scene first?", "the object that leaves the scene first",
                     "what disappears first?"),
    "late": ("which object only shows up near the end?", "the one that only shows up near the end"),
    "appears_last": ("what appears last?", "which object enters the scene last?"),
    "fastest": ("which object is moving fastest?", "what moves the fastest?"),
    "never_moves": ("which object never moves?",),
    "smallest": ("which object is the smallest?",),
    "biggest": ("which object is the biggest?",),
}

#: World-knowledge questions (type 1), by the category / shape / colour they point to.
KNOWLEDGE_QUESTIONS: dict[str, tuple[str, ...]] = {
    "cup": ("what could you drink from?", "which object would hold hot coffee?",
            "what would you use to serve tea?"),
    "cat": ("which animal likes to chase mice?", "which pet says meow?",
            "which animal purrs when it is happy?"),
    "rocket": ("what could fly to space?", "which object could carry a satellite into orbit?",
               "what is launched from a launch pad?"),
    "astronaut": ("who works on a space station?", "who wears a space suit at work?",
                  "which person could walk on the moon?"),
    "coin": ("what could you use to pay?", "what could you put in a piggy bank?", "which things are money?"),
    "horse": ("which one could you ride?", "which animal eats hay?", "which animal could pull a cart?"),
    "square": ("which shape has four equal sides?",),
    "triangle": ("which shape has three corners?",),
    "circle": ("which shape has no corners?",),
    "star": ("which shape has five points?",),
    "red": ("which shape has the colour of a ripe tomato?",),
    "green": ("which shape has the colour of fresh grass?",),
    "blue": ("which shape has the colour of a clear sky?",),
    "yellow": ("which shape has the colour of a banana?",),
}

#: type_id of each template kind (knowledge questions are reasoning, type 1).
KIND_TYPE: dict[str, int] = {
    "name": 0, "plural": 0, "motion": 0, "position": 0, "small": 0, "big": 0, "still": 0,
    "leaves_first": 1, "late": 1, "appears_last": 1, "fastest": 1, "never_moves": 1, "smallest": 1,
    "biggest": 1, "knowledge": 1,
}
DIRECTIONS = ("left", "right", "up", "down")
SIDES = ("on the left", "on the right", "at the top", "at the bottom")
_WORD_RE = re.compile(r"[a-z]+|\?")


def words(text: str) -> list[str]:
    """Word-level tokens of an expression: lower-case words and "?" (``"What?"`` -> ``["what", "?"]``)."""
    return _WORD_RE.findall(text.lower())


def _all_descriptions() -> list[tuple[str, str]]:
    """(singular, plural) of every object description, plus the generic ("object", "objects")."""
    out = [nouns for nouns in sp.PHOTO_CATEGORIES.values()]
    for colour, (shape, shapes) in itertools.product(sp.COLOURS, sp.SHAPES.values()):
        out.append((f"{colour} {shape}", f"{colour} {shapes}"))
    out.append(("object", "objects"))
    return out


def vocabulary() -> list[str]:
    """Sorted list of every token (see :func:`words`) that any generated expression can contain."""
    vocab: set[str] = set()
    fillers = {"dir": DIRECTIONS, "side": SIDES}
    for templates in EXPRESSION_TEMPLATES.values():
        for template in templates:
            for desc, descs in _all_descriptions():
                for d, s in itertools.product(fillers["dir"], fillers["side"]):
                    vocab.update(words(template.format(desc=desc, descs=descs, dir=d, side=s)))
    for questions in KNOWLEDGE_QUESTIONS.values():
        for q in questions:
            vocab.update(words(q))
    return sorted(vocab)


# --------------------------------------------------------------------------------------------- scene facts


@dataclass(eq=False)  # compared by identity: it holds numpy arrays
class ObjectInfo:
    """What the expression generator knows about one object of a rendered video.

    Attributes:
        index: position in the video's object list (``obj_id = index + 1``).
        category: "cat", ..., or a shape name.
        colour: colour word of a shape ("" for photo objects).
        first, last: first and last frame where the object is visible (-1 if never).
        first_in_frame, last_in_frame: first and last frame where it is drawn inside the frame, even if
            hidden behind another object (-1: same as first / last). "Leaves the scene" needs
            ``last_in_frame <= last + 1``: an object merely hidden at the end has not left.
        mean_x, mean_y: mean centre of the visible mask, pixels.
        mean_area: mean visible area over the frames where it is visible, pixels.
        speed: mean displacement of its centre per frame while visible, pixels.
        direction: "left"/"right"/"up"/"down" when it moves steadily that way while visible, else "".
        z: drawing order (higher is in front).
        xs, ys: float [T] centre of the visible mask per frame (NaN where not visible), or None.
    """

    index: int
    category: str
    colour: str
    first: int = -1
    last: int = -1
    mean_x: float = 0.0
    mean_y: float = 0.0
    mean_area: float = 0.0
    speed: float = 0.0
    direction: str = ""
    z: int = 0
    first_in_frame: int = -1
    last_in_frame: int = -1
    xs: np.ndarray | None = field(default=None, repr=False)
    ys: np.ndarray | None = field(default=None, repr=False)

    def position(self, axis: str, num_frames: int) -> np.ndarray:
        """float [T] centre coordinate ("x" or "y") per frame, NaN where the object is not visible."""
        track = self.xs if axis == "x" else self.ys
        if track is not None:
            return track
        out = np.full(num_frames, np.nan)  # only summary statistics known: the mean while visible
        if self.first >= 0:
            out[self.first: self.last + 1] = self.mean_x if axis == "x" else self.mean_y
        return out

    @property
    def desc(self) -> str:
        """Singular description: "cat" or "red square"."""
        if self.category in sp.SHAPES:
            return f"{self.colour} {sp.SHAPES[self.category][0]}"
        return sp.PHOTO_CATEGORIES[self.category][0]

    @property
    def descs(self) -> str:
        """Plural description: "cats" or "red squares"."""
        if self.category in sp.SHAPES:
            return f"{self.colour} {sp.SHAPES[self.category][1]}"
        return sp.PHOTO_CATEGORIES[self.category][1]


@dataclass(frozen=True)
class SyntheticExpression:
    """A generated query: its text, the object indices it refers to, its ReVOS type and template kind."""

    text: str
    objects: tuple[int, ...]
    type_id: int
    kind: str


# ------------------------------------------------------------------------------------------------ expressions


def _unique_extreme(values: Sequence[float], pick_max: bool, margin: float, ratio: float = 1.0) -> int | None:
    """Index of the clear maximum (or minimum) of ``values``: beats every other by ``margin`` and by the
    factor ``ratio``; None when there is no clear winner or fewer than two values."""
    if len(values) < 2:
        return None
    v = np.asarray(values, float) * (1 if pick_max else -1)
    order = np.argsort(-v)
    best, second = v[order[0]], v[order[1]]
    if best - second < margin:
        return None
    if ratio != 1.0:
        a, b = abs(values[order[0]]), abs(values[order[1]])
        if (pick_max and a < ratio * b) or (not pick_max and ratio * a > b):
            return None
    return int(order[0])


def _in_frame(o: ObjectInfo) -> tuple[int, int]:
    """(first, last) frame where ``o`` is inside the frame, occluded or not."""
    first = o.first_in_frame if o.first_in_frame >= 0 else o.first
    last = o.last_in_frame if o.last_in_frame >= 0 else o.last
    return first, last


def _always_beyond(o: ObjectInfo, members: Sequence[ObjectInfo], axis: str, larger: bool, num_frames: int,
                   margin: float = 8.0) -> bool:
    """True when ``o`` is left of (right of, above, below) every other member on every frame where both
    are visible, by ``margin`` pixels, and shares at least one frame with each of them."""
    mine = o.position(axis, num_frames)
    for other in members:
        if other is o:
            continue
        theirs = other.position(axis, num_frames)
        both = ~np.isnan(mine) & ~np.isnan(theirs)
        if not both.any():
            return False
        gap = (mine[both] - theirs[both]) * (1 if larger else -1)
        if gap.min() < margin:
            return False
    return True


def candidate_expressions(objects: Sequence[ObjectInfo], num_frames: int, width: int = WIDTH,
                          height: int = HEIGHT) -> list[SyntheticExpression]:
    """Every expression that is true of this video, each resolved against ALL its objects.

    A construction yields (text, set of object indices); a text reached by two constructions with
    different sets is ambiguous and dropped. Singular phrasings need exactly one object, plural
    ones at least two; a description absent from the video yields a no-target query (type 2).
    """
    found: dict[str, set[tuple[tuple[int, ...], int, str]]] = {}

    def add(kind: str, texts: Sequence[str], members: Sequence[int], type_id: int | None = None) -> None:
        key = (tuple(sorted(members)), KIND_TYPE[kind] if type_id is None else type_id, kind)
        for text in texts:
            found.setdefault(text, set()).add(key)

    objs = [o for o in objects if o.first >= 0]
    groups: dict[str, list[ObjectInfo]] = {}
    for o in objs:
        groups.setdefault(o.desc, []).append(o)
    tpl = EXPRESSION_TEMPLATES

    for desc, members in groups.items():
        idx = [o.index for o in members]
        descs = members[0].descs
        if len(members) == 1:
            add("name", [t.format(desc=desc) for t in tpl["name"]], idx)
        else:
            add("plural", [t.format(descs=descs) for t in tpl["plural"]], idx)
    # video-wide and per-description relational templates ("object" = any object)
    scopes = dict(groups)
    scopes["object"] = objs
    for desc, members in scopes.items():
        for d in DIRECTIONS:
            movers = [o.index for o in members if o.direction == d]
            if len(movers) == 1:
                add("motion", [t.format(desc=desc, dir=d) for t in tpl["motion"]], movers)
        if len(members) < 2:
            continue
        for side, axis, pick_max in zip(SIDES, "xxyy", (False, True, False, True), strict=True):
            means = [o.mean_x if axis == "x" else o.mean_y for o in members]
            j = _unique_extreme(means, pick_max, margin=0.12 * (width if axis == "x" else height))
            if j is not None and _always_beyond(members[j], members, axis, pick_max, num_frames):
                add("position", [t.format(desc=desc, side=side) for t in tpl["position"]], [members[j].index])
        if desc != "object":
            areas = [o.mean_area for o in members]
            j = _unique_extreme(areas, False, margin=0, ratio=1.8)
            if j is not None:
                add("small", [t.format(desc=desc) for t in tpl["small"]], [members[j].index])
            j = _unique_extreme(areas, True, margin=0, ratio=1.8)
            if j is not None:
                add("big", [t.format(desc=desc) for t in tpl["big"]], [members[j].index])
        still = [o.index for o in members if o.speed < 0.35]
        others_move = all(o.speed >= 1.2 for o in members if o.index not in still)
        if len(still) == 1 and others_move and desc != "object":
            add("still", [t.format(desc=desc) for t in tpl["still"]], still)

    # time and size reasoning over all objects
    if len(objs) >= 2:
        lasts = [o.last for o in objs]
        j = _unique_extreme(lasts, False, margin=3)
        # it must really leave (vanish or exit the frame), not just end up hidden behind something
        if j is not None and objs[j].last < num_frames - 3 and _in_frame(objs[j])[1] <= objs[j].last + 1:
            add("leaves_first", tpl["leaves_first"], [objs[j].index])
        firsts = [o.first for o in objs]
        late = [o for o in objs if o.first >= 0.6 * num_frames and _in_frame(o)[0] >= o.first - 1]
        if len(late) == 1 and all(o.first <= 0.35 * num_frames for o in objs if o is not late[0]):
            add("late", tpl["late"], [late[0].index])
        j = _unique_extreme(firsts, True, margin=4)
        if j is not None and objs[j].first >= 3 and _in_frame(objs[j])[0] >= objs[j].first - 1:
            add("appears_last", tpl["appears_last"], [objs[j].index])
        speeds = [o.speed for o in objs]
        j = _unique_extreme(speeds, True, margin=1.0, ratio=1.5)
        if j is not None and objs[j].speed >= 2.0:
            add("fastest", tpl["fastest"], [objs[j].index])
        still = [o for o in objs if o.speed < 0.35]
        if len(still) == 1 and all(o.speed >= 1.2 for o in objs if o is not still[0]):
            add("never_moves", tpl["never_moves"], [still[0].index])
        areas = [o.mean_area for o in objs]
        j = _unique_extreme(areas, False, margin=0, ratio=2.0)
        if j is not None:
            add("smallest", tpl["smallest"], [objs[j].index])
        j = _unique_extreme(areas, True, margin=0, ratio=2.0)
        if j is not None:
            add("biggest", tpl["biggest"], [objs[j].index])

    # world knowledge: all objects of a category / shape / shape colour; absent -> no target (type 2)
    for key, questions in KNOWLEDGE_QUESTIONS.items():
        if key in sp.COLOURS:
            members = [o.index for o in objs if o.category in sp.SHAPES and o.colour == key]
        else:
            members = [o.index for o in objs if o.category == key]
        add("knowledge", questions, members, type_id=1 if members else 2)
    # absent descriptions -> no-target referring texts
    present = set(groups)
    for desc, _ in _all_descriptions()[:-1]:
        if desc not in present:
            add("name", [tpl["name"][0].format(desc=desc)], [], type_id=2)

    out = []
    for text, keys in found.items():
        if len(keys) != 1:
            continue  # two constructions disagree on what this text means: ambiguous
        members, type_id, kind = next(iter(keys))
        singular = kind not in ("plural", "knowledge")
        if type_id != 2 and (not members or (singular and len(members) != 1)):
            continue
        if kind == "plural" and len(members) < 2:
            continue
        out.append(SyntheticExpression(text, members, type_id, kind))
    return out


def resolve_expression(text: str, objects: Sequence[ObjectInfo], num_frames: int, width: int = WIDTH,
                       height: int = HEIGHT) -> tuple[int, ...] | None:
    """The object indices ``text`` refers to in a video (empty tuple = no target), or None when the
    text is not a valid, unambiguous expression for it (same rules as :func:`candidate_expressions`)."""
    for exp in candidate_expressions(objects, num_frames, width, height):
        if exp.text == text:
            return exp.objects
    return None


def select_expressions(rng: np.random.Generator, candidates: list[SyntheticExpression],
                        objects: Sequence[ObjectInfo], count: int) -> list[SyntheticExpression]:
    """Pick ``count`` expressions: ~45% referring, ~40% reasoning, ~15% no target, at most one no-target,
    preferring targets other than the most salient object (largest x fastest), so that a text-blind
    "biggest moving thing" heuristic fails."""
    by_type: dict[int, list[SyntheticExpression]] = {0: [], 1: [], 2: []}
    for c in candidates:
        by_type[c.type_id].append(c)
    salient = max(objects, key=lambda o: o.mean_area * (0.5 + o.speed)).index if objects else -1
    chosen: list[SyntheticExpression] = []
    used_kinds: set[tuple[str, tuple[int, ...]]] = set()
    for _ in range(count * 4):
        if len(chosen) == count:
            break
        t = int(rng.choice(3, p=[0.45, 0.4, 0.15]))
        if t == 2 and any(c.type_id == 2 for c in chosen):
            continue
        pool = [c for c in by_type[t] if c not in chosen and (c.kind, c.objects) not in used_kinds]
        if not pool:
            continue
        weights = np.array([0.35 if salient in c.objects else 1.0 for c in pool])
        pick = pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
        chosen.append(pick)
        used_kinds.add((pick.kind, pick.objects))
    if not any(c.type_id in (0, 1) for c in chosen):  # every video needs a scored expression
        pool = by_type[0] + by_type[1]
        if pool:
            chosen.insert(0, pool[int(rng.integers(len(pool)))])
    return chosen


