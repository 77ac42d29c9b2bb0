"""Associative recall: key-value pairs, then queries of some keys; the target is the value (Zoology's
multi-query associative recall, Arora et al. 2023, in text form).

    Oslo goes with water. Lima goes with song. Rome goes with horse. Cairo goes with king.
    Rome goes with horse. Oslo goes with water.
                   ^ target            ^ target

or in code form, an INI-like file: "[lookup]" with lines "oslo = water", then "[check]" with "rome = horse".

Level = n_pairs. Half of the keys (rounded up) are queried, in random order, so the last answer cannot be
found by elimination. Keys are unique within a document and values within an episode; the only earlier
occurrence of an answer is its own pair (intended: that is the lookup).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tokengap.analysis.probes.base import Episode, Probe, ProbeConfig, Target, spread

KEYS = ("Oslo", "Lima", "Rome", "Cairo", "Paris", "Berlin", "Madrid", "Vienna", "Prague", "Warsaw", "Dublin",
        "London", "Lisbon", "Athens", "Sofia", "Riga", "Tallinn", "Helsinki", "Stockholm", "Copenhagen", "Bern",
        "Brussels", "Amsterdam", "Budapest", "Zagreb", "Belgrade", "Bucharest", "Kyiv", "Minsk", "Moscow",
        "Ankara", "Tehran", "Baghdad", "Riyadh", "Doha", "Dubai", "Delhi", "Mumbai", "Dhaka", "Bangkok", "Hanoi",
        "Manila", "Jakarta", "Seoul", "Tokyo", "Osaka", "Beijing", "Shanghai", "Taipei", "Sydney", "Perth",
        "Auckland", "Toronto", "Ottawa", "Montreal", "Boston", "Chicago", "Denver", "Dallas", "Houston",
        "Phoenix", "Seattle", "Portland", "Miami", "Atlanta", "Detroit", "Havana", "Bogota", "Quito", "Santiago",
        "Caracas", "Nairobi", "Lagos", "Accra", "Dakar", "Tunis", "Algiers", "Rabat", "Kampala", "Harare",
        "Lusaka", "Luanda", "Durban", "Milan", "Naples", "Venice", "Florence", "Turin", "Lyon", "Marseille",
        "Nice", "Porto", "Seville", "Valencia", "Munich", "Hamburg", "Cologne", "Frankfurt", "Geneva", "Zurich",
        "Krakow", "Gdansk", "Vilnius", "Odessa", "Istanbul", "Beirut", "Amman", "Kabul", "Karachi",
        "Lahore", "Colombo", "Kathmandu", "Yangon", "Singapore", "Melbourne", "Brisbane", "Vancouver", "Calgary",
        "Quebec", "Austin", "Memphis", "Nashville", "Orlando", "Tampa", "Buffalo", "Newark", "Omaha", "Tulsa",
        "Reno", "Fresno", "Oakland", "Glasgow", "Leeds", "Bristol", "Cardiff", "Belfast", "Oxford", "Cambridge",
        "York", "Bath", "Salzburg", "Graz", "Basel", "Bergen", "Malmo", "Aarhus", "Tampere", "Turku")
# Common nouns that are one token after a space in byte-level BPEs of 8k-16k trained on our corpora, so the
# first-token rule rarely cuts a value (see docs/probes.md).
VALUES = ("people", "man", "woman", "child", "world", "school", "family", "country", "hand", "week", "company",
          "night", "home", "water", "room", "mother", "story", "month", "book", "eye", "job", "word", "head",
          "house", "friend", "father", "power", "hour", "game", "car", "city", "team", "minute", "idea", "body",
          "face", "office", "door", "person", "art", "war", "history", "party", "morning", "girl", "air", "foot",
          "boy", "music", "market", "plan", "college", "class", "field", "heart", "light", "voice", "wife", "mind",
          "price", "son", "town", "road", "arm", "building", "season", "paper", "space", "ground", "star", "court",
          "oil", "street", "picture", "piece", "land", "doctor", "news", "love", "tree", "hair", "window", "fire",
          "bird", "horse", "dog", "cat", "sea", "ship", "king", "gold", "iron", "glass", "sun", "wind", "bed",
          "chair", "letter", "card", "blood", "brother", "daughter", "dinner", "engine", "fish", "floor", "lady",
          "leg", "ocean", "page", "pen", "rock", "sister", "song", "stage", "summer", "wheel", "winter", "wood")

PROSE = {"pair": "{K} goes with {v}.", "query": "{K} goes with ", "end": "."}
CODE = {"pair": "{k} = {v}", "query": "{k} = ", "end": ""}  # an INI-like file: [lookup] pairs, then [check]


@dataclass(frozen=True)
class RecallConfig(ProbeConfig):
    levels: tuple[int, ...] = (4, 8, 16, 32, 64)
    query_share: float = 0.5  # queried keys per episode: ceil(query_share * n_pairs)
    code_share: float = 0.5  # share of documents in code form


def start_doc(rng, cfg: RecallConfig, level: int, index: int) -> dict:
    keys = list(KEYS)
    rng.shuffle(keys)  # popped: keys are unique within a document
    is_code = spread(index, cfg.code_share)
    return {"keys": keys, "form": "code" if is_code else "prose"}


def episode(rng, cfg: RecallConfig, n_pairs: int, state: dict):
    if len(state["keys"]) < n_pairs or n_pairs > len(VALUES):
        return None
    keys = [state["keys"].pop() for _ in range(n_pairs)]
    values = rng.sample(VALUES, n_pairs)
    queried = rng.sample(range(n_pairs), max(1, math.ceil(cfg.query_share * n_pairs)))
    code = state["form"] == "code"
    tpl = CODE if code else PROSE
    sep = "\n" if code else " "
    pair_lines = [tpl["pair"].format(K=k, k=k.lower(), v=v) for k, v in zip(keys, values)]
    head, value_at = ("[lookup]\n" if code else ""), []
    for line, v in zip(pair_lines, values):
        value_at.append(len(head) + line.rindex(v))
        head += line + sep
    head = head[:-1] + ("\n[check]\n" if code else "\n")
    text, targets = head, []
    for qi, i in enumerate(queried):
        if qi:
            text += sep
        text += tpl["query"].format(K=keys[i], k=keys[i].lower())
        recent = values[queried[qi - 1]] if qi else values[-1]  # the last value written before this query
        fields = {"n_pairs": n_pairs, "form": state["form"], "query_index": qi, "pairs_after": n_pairs - 1 - i,
                  "distance": len(text) - value_at[i]}
        targets.append(Target(len(text), values[i], tuple(values), "value", fields, {"recent_value": recent}))
        text += values[i] + tpl["end"]
    return Episode(text, targets)


PROBE = Probe(name="recall", title="Associative recall", axis="n_pairs", kinds=("value",),
              presets={"small": RecallConfig(max_pretokens=1250),
                       "tiny": RecallConfig(levels=(2, 4, 6, 8), docs_per_level=16, max_pretokens=140)},
              start_doc=start_doc, episode=episode)
