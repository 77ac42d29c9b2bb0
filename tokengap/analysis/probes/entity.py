"""Entity tracking: objects move between numbered boxes; where is an object at the end?

    The key is in box 3. The coin is in box 1. The ring is in box 4. Move the contents of box 3 to box 5.
    Swap the contents of box 5 and box 1. Put the ring into box 2. Now the key is in box 1.
                                                                                      ^ target: "1"

or in code form: put("key", 3) ... move_all(3, 5) ... swap(5, 1) ... assert where("key") == 1.

Level = n_steps (moves after the initial placement). Three operations: move one named object, move the
whole contents of a box, swap two boxes. Only the first names the object, so the answer is state that must
be updated, not copied. Box labels are permuted at random per episode, so answers are uniform over the
boxes, and episodes are resampled so that two shortcuts hit at chance rate (1 / n_boxes): "the last box mentioned" and
"the box of the object's last explicit mention" (its initial placement or a move that names it).
"""
from __future__ import annotations

from dataclasses import dataclass

from tokengap.analysis.probes.base import Episode, Probe, ProbeConfig, Target, sample_until, spread

OBJECTS = ("key", "coin", "ring", "ball", "pen", "stamp", "shell", "button", "marble", "cup", "spoon", "card",
           "dice", "brush", "watch", "badge", "bell", "comb", "glove", "sock", "toy", "medal", "pebble", "feather",
           "ticket", "letter", "candle", "needle", "whistle", "apple", "lemon", "egg", "book", "hat", "mask",
           "flag", "bead", "nail", "pin", "leaf", "fork", "knife", "cork", "chain", "lock", "plate", "map", "flute")

PROSE = {
    "init": ("The {o} is in box {b}.", "Box {b} holds the {o}."),
    "move": ("Move the {o} to box {b}.", "Put the {o} into box {b}."),
    "move_all": ("Move the contents of box {a} to box {b}.", "Empty box {a} into box {b}."),
    "swap": ("Swap the contents of box {a} and box {b}.", "Swap box {a} and box {b}."),
    "query": ("Now the {o} is in box ",),
}
CODE = {
    "init": ('put("{o}", {b})',),
    "move": ('move("{o}", {b})',),
    "move_all": ("move_all({a}, {b})",),
    "swap": ("swap({a}, {b})",),
    "query": ('assert where("{o}") == ',),
}


@dataclass(frozen=True)
class EntityConfig(ProbeConfig):
    levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    n_boxes: int = 5  # labels 1..n_boxes (single digits): candidates, chance = 1 / n_boxes
    n_objects: int = 3  # per episode, in distinct boxes at the start
    p_ops: tuple[float, float, float] = (0.3, 0.4, 0.3)  # move one object, move a box's contents, swap two boxes
    code_share: float = 0.5  # share of documents in code form


def start_doc(rng, cfg: EntityConfig, level: int, index: int) -> dict:
    objects = list(OBJECTS)
    rng.shuffle(objects)  # popped: objects are not reused within a document
    is_code = spread(index, cfg.code_share)
    return {"objects": objects, "form": "code" if is_code else "prose"}


def _simulate(rng, cfg: EntityConfig, objs: list[str], n_steps: int):
    """Random initial placement and operations. Returns (ops, final box of each object, its number of moves)."""
    boxes = list(range(1, cfg.n_boxes + 1))
    where = dict(zip(objs, rng.sample(boxes, len(objs))))
    ops = [("init", o, where[o]) for o in objs]
    moves = dict.fromkeys(objs, 0)
    for _ in range(n_steps):
        before = dict(where)
        op = rng.choices(("move", "move_all", "swap"), weights=cfg.p_ops)[0]
        full = sorted(set(where.values()))
        if op == "move":
            o = rng.choice(objs)
            b = rng.choice([x for x in boxes if x != where[o]])
            where[o] = b
            ops.append(("move", o, b))
        elif op == "move_all":
            a = rng.choice(full)
            b = rng.choice([x for x in boxes if x != a])
            where = {o: (b if w == a else w) for o, w in where.items()}
            ops.append(("move_all", a, b))
        else:
            a = rng.choice(full)
            b = rng.choice([x for x in boxes if x != a])
            if rng.random() < 0.5:
                a, b = b, a  # the box holding something may come first or second
            where = {o: (b if w == a else a if w == b else w) for o, w in where.items()}
            ops.append(("swap", a, b))
        for o in objs:
            moves[o] += where[o] != before[o]
    return ops, where, moves


def _heuristics(ops, obj) -> dict:
    """Answers of the shortcuts, from the operations as written (the text says the same)."""
    last = ops[-1]
    recent = last[2]  # every operation ends with a box number
    explicit = [op[2] for op in ops if op[0] in ("init", "move") and op[1] == obj]
    initial = next(op[2] for op in ops if op[0] == "init" and op[1] == obj)
    return {"recent_box": recent, "last_explicit": explicit[-1], "initial": initial}


def episode(rng, cfg: EntityConfig, n_steps: int, state: dict):
    if len(state["objects"]) < cfg.n_objects:
        return None
    objs = [state["objects"].pop() for _ in range(cfg.n_objects)]
    chance = 1 / cfg.n_boxes
    wants = {"recent_box": rng.random() < chance, "last_explicit": rng.random() < chance}

    def make():
        ops, where, moves = _simulate(rng, cfg, objs, n_steps)
        obj = rng.choice(objs)
        h = _heuristics(ops, obj)
        return (ops, obj, where[obj], moves[obj], h), {k: h[k] == where[obj] for k in wants}

    ops, obj, answer, n_moves, h = sample_until(rng, make, wants)
    # relabel the boxes at random: the answer is uniform over the labels whatever the simulation favoured
    labels = list(range(1, cfg.n_boxes + 1))
    perm = dict(zip(labels, rng.sample(labels, len(labels))))
    want = perm[answer]

    tpl = CODE if state["form"] == "code" else PROSE
    lines = []
    for op in ops:
        t = rng.choice(tpl[op[0]])
        if op[0] in ("init", "move"):
            lines.append(t.format(o=op[1], b=perm[op[2]]))
        else:
            lines.append(t.format(a=perm[op[1]], b=perm[op[2]]))
    sep = "\n" if state["form"] == "code" else " "
    head = sep.join(lines) + sep + tpl["query"][0].format(o=obj)
    text = head + str(want) + ("" if state["form"] == "code" else ".")
    fields = {"n_steps": n_steps, "form": state["form"], "n_boxes": cfg.n_boxes, "n_moves": n_moves,
              "distance": len(head)}
    baselines = {k: str(perm[v]) for k, v in h.items()}
    candidates = tuple(str(b) for b in range(1, cfg.n_boxes + 1))
    return Episode(text, [Target(len(head), str(want), candidates, "box", fields, baselines)])


PROBE = Probe(name="entity", title="Entity tracking", axis="n_steps", kinds=("box",),
              presets={"small": EntityConfig(max_pretokens=1600),
                       "tiny": EntityConfig(levels=(1, 2, 4, 8), docs_per_level=32, max_pretokens=190)},
              start_doc=start_doc, episode=episode)
