"""The benchmark, generated from templates (deterministic by seed): passages, users' personalized contexts,
conversational queries whose answer passage depends on one context, relevance labels.

A slot type (city, car, phone, insurance plan, pet) has values; an intent (pay a parking ticket, reset the tire
pressure light, ...) belongs to one slot type, and the corpus holds one passage per (intent, value): the passages of
an intent differ only in the value, so a query, which never names the value, is ambiguous without the user's
context. A user holds n_contexts contexts, one per slot type (a profile fact "I live in Denver." or a history turn
"Last week you helped me find a mechanic for my Honda Civic."); a query of that user asks an intent of one of those
slot types: the gold passage is (intent, the user's value) and the pertinent context is the one of that slot type.
With context_style = "indirect" a context names its value only by an alias or a description ("I live in the Mile
High City."): no word of any value appears in it, so the passage's value string is never in the context.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theorylab.core.rng import key_from_hash
from theorylab.studies.retrieval.config import RetrievalConfig

SLOTS: dict[str, dict] = {
    "city": {
        "values": ["Boston", "Chicago", "Denver", "Seattle", "Austin", "Miami", "Phoenix", "Portland"],
        "profile": ["I live in {v}.", "My home is in {v}.", "I moved to {v} last year."],
        "history": ["Earlier you told me about bus routes in {v}.", "Last week I asked you about museums in {v}."],
        "intents": {
            "parking": (["How do I pay my parking ticket?", "Where can I pay a parking ticket fine?"],
                        "Parking tickets issued in {v} are paid on the {v} city transportation portal, by mail, or at "
                        "the {v} city hall payment counter within 30 days."),
            "recycling": (["Which day is recycling picked up?", "When does the recycling truck come?"],
                          "In {v}, recycling pickup follows the {v} sanitation calendar; blue bins go to the curb the "
                          "evening before collection day."),
            "library": (["How can I renew my library card?", "My library card expired, how do I renew it?"],
                        "The {v} Public Library renews library cards online or at any {v} branch with a photo ID and "
                        "proof of address."),
        },
    },
    "car": {
        "values": ["Toyota Corolla", "Honda Civic", "Ford F-150", "Tesla Model 3", "Subaru Outback",
                   "Hyundai Elantra", "Mazda CX-5", "Jeep Wrangler"],
        "profile": ["I drive a {v}.", "My car is a {v}.", "I own a {v}."],
        "history": ["Last week you helped me find a mechanic for my {v}.", "I asked you before about the warranty of my {v}."],
        "intents": {
            "tire": (["How do I reset the tire pressure light?", "The tire pressure warning is on, how do I clear it?"],
                     "To reset the tire pressure light on a {v}, inflate all tires, then hold the {v} TPMS reset "
                     "button until the tire pressure light blinks three times."),
            "filter": (["How do I replace the cabin air filter?", "Where is the cabin air filter and how do I change it?"],
                       "On the {v}, the cabin air filter sits behind the glove box; open the glove box of the {v}, "
                       "release the stops and slide the old filter out."),
        },
    },
    "phone": {
        "values": ["iPhone 15", "Pixel 8", "Galaxy S23", "Moto G", "OnePlus 11", "Xperia 5", "Nothing Phone", "Fairphone 5"],
        "profile": ["I use a {v}.", "My phone is a {v}.", "I just bought a {v}."],
        "history": ["Yesterday you explained how to back up my {v}.", "I asked you earlier why my {v} runs hot."],
        "intents": {
            "screenshot": (["How do I take a screenshot?", "What is the shortcut for a screenshot?"],
                           "To take a screenshot on the {v}, press the {v} side button together with volume down; the "
                           "screenshot is saved to the gallery."),
            "battery": (["How do I turn on battery saver?", "How can I make my battery last longer?"],
                        "Battery saver on the {v} is in the {v} settings under battery; turn it on to make the battery "
                        "last longer."),
        },
    },
    "plan": {
        "values": ["Bronze", "Silver", "Gold", "Platinum", "Basic", "Family", "Student", "Senior"],
        "profile": ["My health insurance is the {v} plan.", "I am on the {v} insurance plan.", "I signed up for the {v} plan."],
        "history": ["You told me last month what the {v} plan covers.", "I asked you about upgrading from the {v} plan."],
        "intents": {
            "claim": (["How do I file an insurance claim?", "What do I need to submit a claim?"],
                      "Members of the {v} plan file an insurance claim in the member portal; {v} plan claims need the "
                      "itemized bill and are answered within 14 days."),
            "deductible": (["What is my deductible?", "How much is the deductible?"],
                           "The {v} plan has its own deductible; the {v} plan deductible resets every January and "
                           "counts in-network visits only."),
        },
    },
    "pet": {
        "values": ["dog", "cat", "rabbit", "parrot", "hamster", "turtle", "ferret", "guinea pig"],
        "profile": ["I have a {v}.", "My pet is a {v}.", "We adopted a {v} this spring."],
        "history": ["You gave me tips on training my {v}.", "I asked you before about a vet for my {v}."],
        "intents": {
            "vaccines": (["Which vaccines does my pet need?", "What shots should my pet get?"],
                         "A {v} needs the core vaccines recommended for a {v}; ask the vet for the {v} schedule of "
                         "shots and boosters."),
            "feeding": (["How often should I feed my pet?", "What should my pet eat every day?"],
                        "Feed an adult {v} on a fixed schedule with food made for a {v}; a {v} also needs fresh water "
                        "every day."),
        },
    },
}
SLOT_NAMES = list(SLOTS)

# The indirect wording (context_style = "indirect"): the same profile / history forms, but the value is named by an
# alias or a description (written here) that contains no word of any value of any slot (tests/test_retrieval_indirect
# checks it), so a retriever has to know that "the Mile High City" is Denver; matching strings cannot find it.
# Each kind has as many forms as its verbatim twin: the draw of a form index is the same in both styles, so the two
# styles of one seed share users, values, queries and form choices (context_style is a swept field).
INDIRECT: dict[str, dict] = {
    "city": {
        "profile": ["I live in {d}.", "My home is in {d}.", "I moved to {d} last year."],
        "history": ["Earlier you told me about bus routes in {d}.", "Last week I asked you about museums in {d}."],
        "aliases": {
            "Boston": ["Beantown", "the city of the Freedom Trail and the Red Sox"],
            "Chicago": ["the Windy City", "the city on Lake Michigan with the Willis Tower"],
            "Denver": ["the Mile High City", "the capital of Colorado"],
            "Seattle": ["the Emerald City", "the city of the Space Needle"],
            "Austin": ["the capital of Texas", "the Live Music Capital of the World"],
            "Miami": ["the Magic City", "the city of South Beach"],
            "Phoenix": ["the Valley of the Sun", "the capital of Arizona"],
            "Portland": ["the Rose City", "the biggest city in Oregon"],
        },
    },
    "car": {
        "profile": ["I drive {d}.", "My car is {d}.", "I own {d}."],
        "history": ["Last week you helped me find a mechanic for my car, {d}.",
                    "I asked you before about the warranty of my car, {d}."],
        "aliases": {
            "Toyota Corolla": ["a compact sedan from the maker of the Prius",
                               "the small sedan of the Japanese carmaker behind the Camry"],
            "Honda Civic": ["a compact sedan from the maker of the Accord",
                            "the small sedan of the Japanese carmaker behind the CR-V"],
            "Ford F-150": ["a full-size pickup truck from the maker of the Mustang",
                           "the best-selling pickup of the Detroit carmaker behind the Bronco"],
            "Tesla Model 3": ["an electric sedan from Elon Musk's car company",
                              "the cheapest electric sedan of the maker of the Cybertruck"],
            "Subaru Outback": ["an all-wheel-drive station wagon from the maker of the Forester",
                               "the rugged wagon of the Japanese carmaker behind the Impreza"],
            "Hyundai Elantra": ["a compact sedan from the Korean maker of the Sonata",
                                "the small sedan of the Korean carmaker behind the Tucson"],
            "Mazda CX-5": ["a compact crossover from the maker of the Miata",
                           "the small SUV of the Hiroshima carmaker"],
            "Jeep Wrangler": ["an open-top off-roader from the maker of the Cherokee",
                              "the boxy four-by-four descended from the army's World War II utility vehicle"],
        },
    },
    "phone": {
        "profile": ["I use {d}.", "My phone is {d}.", "I just bought {d}."],
        "history": ["Yesterday you explained how to back up my phone, {d}.",
                    "I asked you earlier why my phone, {d}, runs hot."],
        "aliases": {
            "iPhone 15": ["Apple's 2023 smartphone", "the handset Apple released in 2023"],
            "Pixel 8": ["Google's own 2023 smartphone", "the handset Google made in 2023"],
            "Galaxy S23": ["Samsung's 2023 flagship smartphone", "the flagship Samsung released in early 2023"],
            "Moto G": ["a budget Android handset from Motorola", "Motorola's cheap Android line"],
            "OnePlus 11": ["the 2023 flagship of the Shenzhen brand whose motto was never settle",
                           "the 2023 handset from the brand that told buyers to never settle"],
            "Xperia 5": ["a compact Sony smartphone", "Sony's small flagship handset"],
            "Nothing Phone": ["the handset with blinking light strips on its transparent back",
                              "the see-through handset from Carl Pei's London start-up"],
            "Fairphone 5": ["the Dutch modular handset built to be repaired at home",
                            "an ethically sourced, repairable handset from the Netherlands"],
        },
    },
    "plan": {
        "profile": ["My health insurance is {d}.", "I am on {d} for health insurance.", "I signed up for {d}."],
        "history": ["You told me last month what {d} covers.", "I asked you about upgrading from {d}."],
        "aliases": {
            "Bronze": ["the plan named after the third-place Olympic medal", "the lowest of the metal tiers"],
            "Silver": ["the plan named after the second-place Olympic medal", "the middle metal tier"],
            "Gold": ["the plan named after the first-place Olympic medal", "the metal tier just below the top one"],
            "Platinum": ["the plan named after the metal of a million-selling record",
                         "the top metal tier, with the highest premium"],
            "Basic": ["the entry-level plan with bare-minimum coverage", "the no-frills plan that covers only essentials"],
            "Family": ["the plan that covers my spouse and our kids", "the plan for a whole household with children"],
            "Student": ["the plan for people enrolled at a university", "the plan my college offers its undergraduates"],
            "Senior": ["the plan for people over sixty-five", "the plan for retirees"],
        },
    },
    "pet": {
        "profile": ["I have {d}.", "My pet is {d}.", "We adopted {d} this spring."],
        "history": ["You gave me tips on training my pet, {d}.", "I asked you before about a vet for my pet, {d}."],
        "aliases": {
            "dog": ["a four-legged companion that barks and fetches sticks", "a loyal puppy that I walk twice a day"],
            "cat": ["a purring feline that naps in the sun", "a kitten that chases laser pointers"],
            "rabbit": ["a long-eared bunny that hops around the garden", "a bunny that loves carrots"],
            "parrot": ["a talking bird that repeats what I say", "a colourful macaw that mimics voices"],
            "hamster": ["a small rodent that runs on a wheel all night", "a tiny rodent that stores food in its cheeks"],
            "turtle": ["a slow reptile that carries its shell", "a shelled reptile living in a tank"],
            "ferret": ["a playful weasel-like animal that steals socks", "a slinky mustelid that sleeps in a hammock"],
            "guinea pig": ["a tailless rodent from the Andes that squeaks for vegetables",
                           "a cavy that whistles when I open the fridge"],
        },
    },
}
INTENTS = [(slot, name) for slot in SLOT_NAMES for name in SLOTS[slot]["intents"]]


@dataclass
class Benchmark:
    passages: list[str]  # the corpus (the same for every draw of one config)
    passage_key: list[tuple[str, str, int]]  # (slot, intent, value index) of each passage
    contexts: list[list[str]]  # per user: n_contexts texts
    queries: list[str]
    query_user: list[int]
    gold_passage: list[int]  # index into passages
    gold_context: list[int]  # index into the user's contexts


def corpus(n_values: int) -> tuple[list[str], list[tuple[str, str, int]]]:
    texts, keys = [], []
    for slot, intent in INTENTS:
        template = SLOTS[slot]["intents"][intent][1]
        for v in range(n_values):
            texts.append(template.format(v=SLOTS[slot]["values"][v]))
            keys.append((slot, intent, v))
    return texts, keys


def context_text(slot: str, kind: str, form: int, value: int, style: str, alias_rng: np.random.Generator) -> str:
    """One context: the form-th profile / history form of the slot, naming its value verbatim or by an alias."""
    name = SLOTS[slot]["values"][value]
    if style == "verbatim":
        return SLOTS[slot][kind][form].format(v=name)
    aliases = INDIRECT[slot]["aliases"][name]
    return INDIRECT[slot][kind][form].format(d=aliases[int(alias_rng.integers(len(aliases)))])


def make_benchmark(cfg: RetrievalConfig) -> Benchmark:
    """One draw: a numpy stream keyed by the config's world_hash (a draw does not depend on the other draws batched,
    nor on the retriever's fields: configs differing only in those share their benchmark)."""
    rng = np.random.default_rng(key_from_hash(cfg.world_hash))
    # the alias draws have their own stream, so the main stream (users, values, forms, queries) is the same in both
    # styles: the indirect benchmark is the verbatim one reworded
    alias_rng = np.random.default_rng([key_from_hash(cfg.world_hash), 1])
    passages, keys = corpus(cfg.n_values)
    index = {k: i for i, k in enumerate(keys)}
    contexts, queries, q_user, gold_p, gold_c = [], [], [], [], []
    for u in range(cfg.n_users):
        slots = [SLOT_NAMES[i] for i in rng.permutation(len(SLOT_NAMES))[: cfg.n_contexts]]  # context order = draw order
        values = {s: int(rng.integers(cfg.n_values)) for s in slots}
        texts = []
        for s in slots:
            kind = "history" if rng.random() < cfg.history_share else "profile"
            form = int(rng.integers(len(SLOTS[s][kind])))
            texts.append(context_text(s, kind, form, values[s], cfg.context_style, alias_rng))
        contexts.append(texts)
        for _ in range(cfg.queries_per_user):
            j = int(rng.integers(len(slots)))
            s = slots[j]
            names = list(SLOTS[s]["intents"])
            intent = names[int(rng.integers(len(names)))]
            forms = SLOTS[s]["intents"][intent][0]
            queries.append(forms[int(rng.integers(len(forms)))])
            q_user.append(u)
            gold_p.append(index[(s, intent, values[s])])
            gold_c.append(j)
    return Benchmark(passages, keys, contexts, queries, q_user, gold_p, gold_c)
