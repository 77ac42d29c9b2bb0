"""Pronoun memory: remember who did something, across k sentences about other people.

    Tom washed the kettle. Maria bought the lamp on Monday. The gardener painted the fence, and then he
    went home. [... k sentences about other people ...] Asked about the lamp, she said that it was fine.
                                                                              ^ target: "she" (kind "pronoun")

The target entity is introduced by a gendered name ("Maria") or by a role noun with an explicit pronoun
("The baker ..., and then she left"); 0-3 other sentences come before it, so its place in the episode is a
weak cue; then k distractor sentences about other entities (level = k = `n_distractors`); then a query
sentence that names the target's object and whose next word is the pronoun (or, in "name" documents, the
name) that refers back to the target. Other entities' genders are independent of the target's, and episodes
are resampled so that the gender of the most recent entity and the most recent explicit pronoun agree with
the answer at a chosen rate (default 1/2 = chance), for k >= 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from tokengap.analysis.probes.base import Episode, Probe, ProbeConfig, Target, sample_until, spread

FEMALE = ("Mary", "Anna", "Emma", "Sarah", "Laura", "Julia", "Clara", "Alice", "Helen", "Grace", "Lucy", "Rose",
          "Jane", "Kate", "Ella", "Nora", "Ruth", "Amy", "Lisa", "Maria", "Sofia", "Olivia", "Chloe", "Hannah",
          "Emily", "Ellen", "Irene", "Diana", "Paula", "Linda", "Susan", "Karen", "Nancy", "Joan", "Martha",
          "Sylvia", "Vera", "Eva", "Fiona", "Agnes")
MALE = ("John", "Peter", "David", "James", "Paul", "Mark", "Thomas", "Daniel", "Robert", "Michael", "George",
        "Henry", "Jack", "Oliver", "Samuel", "Adam", "Simon", "Frank", "Victor", "Martin", "Albert", "Edward",
        "Arthur", "Walter", "Louis", "Oscar", "Hugo", "Felix", "Leo", "Ivan", "Carl", "Brian", "Kevin", "Steven",
        "Gary", "Eric", "Tom", "Ben", "Max", "Noah")
GENDER_OF_NAME = {**{n: "she" for n in FEMALE}, **{n: "he" for n in MALE}}
ROLES = ("gardener", "teacher", "doctor", "baker", "driver", "pilot", "lawyer", "nurse", "painter", "writer",
         "farmer", "student", "clerk", "chef", "guard", "tailor", "singer", "banker", "judge", "dentist",
         "plumber", "engineer", "librarian", "courier", "sailor", "mechanic", "architect", "cashier", "coach",
         "neighbour")
OBJECTS = ("lamp", "bicycle", "kettle", "map", "violin", "clock", "ladder", "basket", "camera", "chair",
           "mirror", "blanket", "guitar", "umbrella", "bucket", "hammer", "radio", "suitcase", "table", "piano",
           "carpet", "jacket", "bottle", "painting", "helmet", "sofa", "fence", "boat", "kite", "wallet",
           "notebook", "teapot", "drum", "vase", "cabinet", "saddle", "lantern", "curtain", "shovel", "stove",
           "scarf", "tent", "sled", "window", "door", "desk", "bench", "canoe", "trumpet", "cushion", "candle",
           "bowl", "rope", "barrel", "cart", "telescope", "fan", "printer", "rug", "wagon", "crate", "quilt")
VERBS = ("bought", "repaired", "painted", "borrowed", "sold", "found", "cleaned", "wrapped", "carried", "packed",
         "lost", "measured", "polished", "moved", "ordered", "returned", "washed", "fixed")
WHEN = ("", "", " on Monday", " in the morning", " at the market", " last week", " after lunch", " yesterday")
AFTER = ("went home", "left early", "smiled", "sat down", "waved", "laughed", "walked away", "made some tea")
QUERIES = ("Asked about the {obj}, ", "When someone mentioned the {obj}, ", "Later, speaking of the {obj}, ",
           "A week later, asked about the {obj}, ")
TAILS = ("said that it was fine.", "said nothing more.", "only shrugged.", "said it was a good one.")
PRONOUNS = ("she", "he")


@dataclass(frozen=True)
class PronounConfig(ProbeConfig):
    levels: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    name_share: float = 0.25  # share of documents whose answers are the name instead of the pronoun
    p_role: float = 0.5  # an entity (target or distractor) is a role noun with an explicit pronoun, else a name
    p_other_gender: float = 0.5  # each other entity has the target's other gender with this probability
    max_before: int = 3  # 0..max_before other sentences (uniform) precede the target's sentence
    p_recent_hit: float = 0.5  # wanted rate at which the most recent entity's / pronoun's gender is the answer


def _other(g: str) -> str:
    return "he" if g == "she" else "she"


def start_doc(rng, cfg: PronounConfig, level: int, index: int) -> dict:
    """Pools split in two per document: targets are never reused in the document, and never distractors."""
    def split(items):
        items = list(items)
        rng.shuffle(items)
        return items[:len(items) // 2], items[len(items) // 2:]

    tf, df = split(FEMALE)
    tm, dm = split(MALE)
    tr, dr = split(ROLES)
    to, do = split(OBJECTS)
    is_name = spread(index, cfg.name_share)
    return {"form": "name" if is_name else "pronoun", "target_names": {"she": tf, "he": tm}, "target_roles": tr,
            "target_objects": to, "names": {"she": df, "he": dm}, "roles": dr, "objects": do}


def _sentence(rng, entity: tuple[str, str, bool], obj: str) -> tuple[str, bool]:
    """entity = (surface, gender, is_role). Returns the sentence and whether it holds an explicit pronoun."""
    surface, gender, is_role = entity
    s = f"{surface[0].upper()}{surface[1:]} {rng.choice(VERBS)} the {obj}{rng.choice(WHEN)}"
    if is_role:
        return f"{s}, and then {gender} {rng.choice(AFTER)}.", True
    return s + ".", False


def episode(rng, cfg: PronounConfig, k: int, state: dict):
    form = state["form"]
    gender = rng.choice(PRONOUNS)
    name_pool, role_pool = state["target_names"][gender], state["target_roles"]
    n_before = rng.randint(0, cfg.max_before)
    n = n_before + k
    if not name_pool or not role_pool or not state["target_objects"] \
            or n > min(len(state["objects"]), len(state["names"]["she"]), len(state["names"]["he"])):
        return None
    obj = state["target_objects"].pop()
    # wanted heuristic outcomes (only meaningful once something stands between target and query)
    wants = {} if (k == 0 or form == "name") else {
        "recent_entity": rng.random() < cfg.p_recent_hit, "recent_pronoun": rng.random() < cfg.p_recent_hit}

    def make():
        is_role = form == "pronoun" and rng.random() < cfg.p_role
        target = (f"the {role_pool[-1]}", gender, True) if is_role else (name_pool[-1], gender, False)
        genders = [_other(gender) if rng.random() < cfg.p_other_gender else gender for _ in range(n)]
        roles = [form == "pronoun" and rng.random() < cfg.p_role for _ in range(n)]
        roles = [r and sum(roles[:i + 1]) <= len(state["roles"]) for i, r in enumerate(roles)]
        names = {g: rng.sample(state["names"][g], sum(1 for g2, r in zip(genders, roles) if g2 == g and not r))
                 for g in PRONOUNS}
        role_list = rng.sample(state["roles"], sum(roles))
        others = [(f"the {role_list.pop()}", g, True) if r else (names[g].pop(), g, False)
                  for g, r in zip(genders, roles)]
        entities = others[:n_before] + [target] + others[n_before:]
        objs = rng.sample(state["objects"], n)
        objs = objs[:n_before] + [obj] + objs[n_before:]
        sents = [_sentence(rng, e, o) for e, o in zip(entities, objs)]
        last_pron = next((e[1] for e, (_, has) in zip(reversed(entities), reversed(sents)) if has), None)
        hits = {"recent_entity": entities[-1][1] == gender, "recent_pronoun": last_pron == gender}
        return (is_role, entities, [s for s, _ in sents], last_pron), hits

    is_role, entities, sentences, last_pron = sample_until(rng, make, wants)
    (role_pool if is_role else name_pool).pop()  # the target is not reused in this document
    head = " ".join(sentences) + " " + rng.choice(QUERIES).format(obj=obj)
    if form == "pronoun":
        answer, candidates = gender, PRONOUNS
        baselines = {"recent_entity": entities[-1][1], "recent_pronoun": last_pron, "first_entity": entities[0][1],
                     "second_entity": entities[1][1] if len(entities) > 1 else None}
    else:
        answer = entities[n_before][0]
        candidates = tuple(e[0] for e in entities)
        baselines = {"recent_entity": entities[-1][0], "first_entity": entities[0][0],
                     "second_entity": entities[1][0] if len(entities) > 1 else None}
    start = sum(len(s) + 1 for s in sentences[:n_before])  # the target's sentence
    text = f"{head}{answer} {rng.choice(TAILS)}"
    fields = {"n_distractors": k, "n_before": n_before, "intro": "role" if is_role else "name",
              "distance": len(head) - start}
    return Episode(text, [Target(len(head), answer, candidates, form, fields, baselines)])


PROBE = Probe(name="pronoun", title="Pronoun memory", axis="n_distractors", kinds=("pronoun", "name"),
              presets={"small": PronounConfig(max_pretokens=1350),
                       "tiny": PronounConfig(levels=(0, 1, 2, 4), docs_per_level=32, max_pretokens=150)},
              start_doc=start_doc, episode=episode)
