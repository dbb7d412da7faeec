"""The guard's prompt pre-filter: which erased concepts a prompt asks for, before anything is drawn. Pure.

    f = PromptFilter.build(concept_set, ("star", "square"))           # the committed concepts
    f = PromptFilter.build(concept_set, erased, embedder=encoder)     # + the served model's text encoder
    verdict = f.check("A big RED Strar, next to a diamond")           # verdict.concepts == ("star",)

Built from the concept set's entries of the erased concepts: each one's name, synonyms, paraphrases, subclasses
(with their own synonyms) and, for a variant ("red star"), every wording of its attribute values and object.
A prompt is normalised (case, accents, punctuation, plurals: "Stars!" is "star") and matched three ways:

- exact: a token is an erased concept's word; a several-word entry ("teddy bear", a paraphrase, a variant)
  matches when each of its content words is in the prompt within a window of its length + 3 tokens, in any
  order ("bear teddy", "star red" for "red star");
- fuzzy: a token the set does not know, within optimal-string-alignment distance 1 of a concept word of 4 to 7
  letters or 2 of one of 8 or more (none for 3 letters or fewer), and nearer to it than to any word the set
  knows for something else; two adjacent fragments joined ("st ar") and a word glued to a known one
  ("redstar", "astar") are tried too. A token the set knows as it is (a neighbour, an attribute, a template
  word) is never read fuzzily, and a word the set knows for a retained concept wins every tie;
- encoder (when an Embedder is given): what is left unexplained (words the set does not know, and runs of
  them) is embedded by the served model's own text encoder and read as the concept whose anchor is nearest,
  if that concept is erased and the cosine is at least a threshold calibrated on the set alone: midway between
  the least similar pair of one concept's own wordings (name and synonyms) and the most similar pair of two
  distinct concepts (a superclass and its members excepted). A synonym the set does not list is caught only so.

Neighbours (a concept's `near` list, e.g. diamond beside square) are words the set knows for a retained concept:
the filter never blocks them. What reaches the model anyway is the audit's to catch (the campaign's judge).
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import product

from erasecore.concepts import ConceptEntry, ConceptSet

# Function words: never a concept, never read fuzzily or by the encoder.
STOPWORDS = frozenset(("a", "an", "the", "of", "and", "or", "to", "in", "on", "at", "with", "next", "is", "are", "be",
                       "there", "this", "that", "it", "its", "by", "for", "from", "as", "into", "onto", "over",
                       "under", "near", "beside", "some"))
GENERIC_TEMPLATE = "a photo of a {}"
WINDOW_SLACK = 3            # a several-word entry's words may be spread over its length + this many tokens
MAX_RUN = 6                 # longest run of unexplained words the encoder reads as one phrase

Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]   # texts -> one vector per text


def fold(word: str) -> str:
    """Case- and accent-free: 'Été' -> 'ete'."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.casefold()) if not unicodedata.combining(c))


def singulars(word: str) -> tuple[str, ...]:
    """What a regular English plural may be the plural of, likeliest first ('boxes' -> 'boxe', 'box')."""
    out = []
    if len(word) > 4 and word.endswith("ies"):
        out.append(word[:-3] + "y")
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        out.append(word[:-1])
    if len(word) > 4 and word.endswith("es"):
        out.append(word[:-2])
    return tuple(out)


def words_of(text: str) -> tuple[str, ...]:
    """The words of a wording: folded, split on anything but letters and digits."""
    return tuple(fold(m.group()) for m in re.finditer(r"[^\W_]+", text))


@dataclass(frozen=True)
class Token:
    word: str                # folded; the singular where a plural's singular is a word the filter knows
    start: int               # character offsets in the prompt
    end: int


def tokenize(prompt: str, vocabulary: frozenset[str] = frozenset()) -> list[Token]:
    out = []
    for m in re.finditer(r"[^\W_]+", prompt):
        word = fold(m.group())
        if word not in vocabulary:
            word = next((w for w in singulars(word) if w in vocabulary), word)
        out.append(Token(word, m.start(), m.end()))
    return out


def allowance(word: str) -> int:
    """Edits a misspelling of `word` may have: none up to 3 letters, 1 up to 7, 2 from 8."""
    return 0 if len(word) <= 3 else 1 if len(word) <= 7 else 2


def osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap two neighbours); limit + 1 past it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        prev2, prev = prev, row
    return min(prev[-1], limit + 1)


@dataclass(frozen=True)
class Phrase:
    """One wording of an erased concept the filter was built from."""

    concept: str
    wording: str                     # as the concept set writes it
    kind: str                        # name | synonym | paraphrase | subclass | variant
    words: tuple[str, ...]           # its content words, normalised


@dataclass(frozen=True)
class Match:
    """Where a prompt asks for an erased concept."""

    concept: str
    wording: str                     # the concept set's wording it matched ("" for the encoder: its nearest anchor)
    kind: str                        # name | synonym | paraphrase | subclass | variant | encoder
    how: str                         # exact | fuzzy | encoder
    start: int                       # the matched span in the prompt
    end: int
    text: str                        # prompt[start:end]
    score: float                     # 1.0 exact; 1 - edits/length fuzzy; the cosine for the encoder


@dataclass(frozen=True)
class FilterVerdict:
    prompt: str
    matches: tuple[Match, ...]

    @property
    def concepts(self) -> tuple[str, ...]:
        """The erased concepts the prompt touches, in order of first appearance."""
        return tuple(dict.fromkeys(m.concept for m in sorted(self.matches, key=lambda m: m.start)))

    @property
    def touched(self) -> bool:
        return bool(self.matches)


@dataclass(frozen=True)
class EncoderStage:
    """Anchors of every concept of the set, embedded by the served model's text encoder, and the threshold."""

    embed: Embedder
    template: str                                          # what a word is embedded in ("a {}")
    anchors: tuple[tuple[str, str, tuple[float, ...]], ...]   # (concept, wording, unit vector)
    threshold: float                                       # cosine at or above which a word reads as its anchor
    calibration: str                                       # how the threshold was set, in words
    erased: frozenset[str] = frozenset()


@dataclass
class _Hit:
    concept: str
    wording: str
    kind: str
    how: str
    score: float


class PromptFilter:
    """Which erased concepts a prompt touches (module docstring: how it matches)."""

    def __init__(self, phrases: Sequence[Phrase], known: Iterable[str], encoder: EncoderStage | None = None):
        self.phrases = tuple(phrases)
        self.erased = tuple(dict.fromkeys(p.concept for p in self.phrases))
        self.single: dict[str, list[Phrase]] = {}
        for p in self.phrases:
            if len(p.words) == 1:
                self.single.setdefault(p.words[0], []).append(p)
        self.several = tuple(p for p in self.phrases if len(p.words) > 1)
        # Words the set knows for something other than an erased concept's single-word wording.
        self.known = frozenset(w for w in known if w not in self.single)
        self.vocabulary = self.known | {w for p in self.phrases for w in p.words}
        self.encoder = encoder

    @classmethod
    def build(cls, concept_set: ConceptSet, concepts: Sequence[str], embedder: Embedder | None = None) -> PromptFilter:
        """The filter of the erased `concepts` (names in `concept_set`, variants, or thin names)."""
        phrases = [p for c in concepts for p in phrases_of(concept_set, c)]
        encoder = encoder_stage(concept_set, concepts, embedder) if embedder is not None else None
        return cls(phrases, known_words(concept_set), encoder)

    # -- matching --

    def check(self, prompt: str) -> FilterVerdict:
        toks = tokenize(prompt, self.vocabulary)
        hits: dict[int, list[_Hit]] = {}
        explained = [False] * len(toks)
        for i, t in enumerate(toks):
            found, explained[i] = self._word(t.word)
            if found:
                hits[i] = found
        matches = [self._match(prompt, toks[i], toks[i], h) for i, hs in hits.items() for h in hs]
        used = set(hits)
        for i in range(len(toks) - 1):   # fragments of one word: "st ar"
            if i in used or i + 1 in used or (explained[i] and explained[i + 1]):
                continue
            found, _ = self._word(toks[i].word + toks[i + 1].word, fragments=True)
            if found:
                used |= {i, i + 1}
                matches += [self._match(prompt, toks[i], toks[i + 1], h) for h in found]
        for phrase in self.several:
            span = self._phrase_span(phrase, toks)
            if span is not None:
                (a, b), how, score = span
                used |= set(range(a, b + 1))
                matches.append(self._match(prompt, toks[a], toks[b], _Hit(phrase.concept, phrase.wording,
                                                                               phrase.kind, how, score)))
        if self.encoder is not None:
            open_ = [i for i in range(len(toks)) if i not in used and not explained[i]
                     and toks[i].word not in STOPWORDS]
            matches += self._encoded(prompt, toks, open_)
        unique = {(m.concept, m.start, m.end, m.how): m for m in matches}
        return FilterVerdict(prompt, tuple(sorted(unique.values(), key=lambda m: (m.start, m.concept))))

    def _word(self, word: str, fragments: bool = False) -> tuple[list[_Hit], bool]:
        """(hits, explained) for one normalised word: explained means the set knows what it is."""
        if word in self.single:
            return [_Hit(p.concept, p.wording, p.kind, "exact", 1.0) for p in self.single[word]], True
        if word in self.known or word in STOPWORDS:
            return [], True
        fuzzy = self._nearest(word)
        if fuzzy is not None:
            return fuzzy
        if not fragments and len(word) >= 5:
            glued = self._glued(word)
            if glued:
                return glued, True
        return [], False

    def _nearest(self, word: str) -> tuple[list[_Hit], bool] | None:
        """The nearest word within its allowance (the word or, a misspelled plural, its singular): hits if it
        is an erased concept's and no word the set knows for something else is as near."""
        best, erased, other = None, [], False
        forms = (word, *singulars(word))
        for candidate in (*self.single, *self.known):
            if candidate in STOPWORDS:
                continue
            limit = allowance(candidate)
            if limit == 0:
                continue
            d = min((osa_distance(f, candidate, limit) for f in forms if abs(len(candidate) - len(f)) <= limit),
                    default=limit + 1)
            if d > limit:
                continue
            if best is None or d < best:
                best, erased, other = d, [], False
            if d == best:
                if candidate in self.single:
                    erased.append(candidate)
                else:
                    other = True
        if best is None:
            return None
        if other:   # as near to a word the set knows for something else: a retained word wins the tie
            return [], True
        return [_Hit(p.concept, p.wording, p.kind, "fuzzy", 1 - best / max(len(w), len(word)))
                for w in erased for p in self.single[w]], True

    def _glued(self, word: str) -> list[_Hit]:
        """A word glued to a known one or a function word: 'redstar', 'astar'."""
        for k in range(1, len(word)):
            for part, rest in ((word[:k], word[k:]), (word[k:], word[:k])):
                if part in self.known or part in STOPWORDS or part in self.single:
                    found, _ = self._word(rest, fragments=True)
                    if found:
                        return found
        return []

    def _phrase_span(self, phrase: Phrase, toks: list[Token]):
        """((first, last) token index, how, score) where every word of the phrase is within one window."""
        width = len(phrase.words) + WINDOW_SLACK
        for start in range(len(toks)):
            window = range(start, min(start + width, len(toks)))
            taken: dict[int, float] = {}
            for w in phrase.words:
                pick = None
                for i in window:
                    if i in taken:
                        continue
                    score = _word_score(toks[i].word, w, self.known)
                    if score is not None and (pick is None or score > pick[1]):
                        pick = (i, score)
                if pick is None:
                    break
                taken[pick[0]] = pick[1]
            else:
                how = "exact" if all(s == 1.0 for s in taken.values()) else "fuzzy"
                return (min(taken), max(taken)), how, sum(taken.values()) / len(taken)
        return None

    def _encoded(self, prompt: str, toks: list[Token], open_: list[int]) -> list[Match]:
        """The encoder's reading of unexplained words, and of runs of them (function words inside a run kept)."""
        enc = self.encoder
        units = [(i, i) for i in open_]
        run: list[int] = []
        for i in range(len(toks) + 1):
            if i < len(toks) and (i in open_ or (run and toks[i].word in STOPWORDS)):
                run.append(i)
                continue
            while run and toks[run[-1]].word in STOPWORDS:
                run.pop()
            if len(run) > 1:
                units.append((run[0], min(run[-1], run[0] + MAX_RUN - 1)))
            run = []
        if not units:
            return []
        texts = [enc.template.format(prompt[toks[a].start:toks[b].end]) for a, b in units]
        out = []
        for (a, b), vector in zip(units, enc.embed(texts)):
            concept, wording, cos = nearest_anchor(unit(vector), enc.anchors)
            if concept in enc.erased and cos >= enc.threshold:
                out.append(self._match(prompt, toks[a], toks[b], _Hit(concept, wording, "encoder", "encoder", cos)))
        return out

    @staticmethod
    def _match(prompt: str, first: Token, last: Token, hit: _Hit) -> Match:
        return Match(hit.concept, hit.wording, hit.kind, hit.how, first.start, last.end,
                     prompt[first.start:last.end], round(float(hit.score), 4))


def _word_score(token: str, word: str, known: frozenset[str]) -> float | None:
    if token == word:
        return 1.0
    if token in known or token in STOPWORDS:
        return None
    limit = allowance(word)
    d = osa_distance(token, word, limit) if limit else 1
    return 1 - d / max(len(word), len(token)) if d <= limit else None


# -- building --

def _content(text: str) -> tuple[str, ...]:
    return tuple(w for w in words_of(text) if w not in STOPWORDS) or words_of(text)


def _wordings(entry: ConceptEntry) -> tuple[str, ...]:
    return tuple(dict.fromkeys((entry.name, *entry.synonyms)))


def phrases_of(concept_set: ConceptSet, concept: str) -> list[Phrase]:
    """Every wording of an erased concept: name, synonyms, paraphrases, subclasses (theirs too), variants."""
    entry = concept_set.entry(concept, allow_thin=True)
    out: list[tuple[str, str]] = [(entry.name, "name")] + [(s, "synonym") for s in entry.synonyms]
    out += [(p, "paraphrase") for p in entry.paraphrases]
    seen, todo = {entry.name}, list(entry.subclasses)
    while todo:   # subclasses, and theirs
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        sub = concept_set.concepts.get(name)
        out += [(name, "subclass")]
        if sub is not None:
            out += [(s, "subclass") for s in sub.synonyms] + [(p, "subclass") for p in sub.paraphrases]
            todo += list(sub.subclasses)
    if entry.kind == "variant":
        obj = concept_set.concepts[entry.superclass]
        values = [_wordings(concept_set.concepts[v[0]]) for v in entry.attributes.values()]
        out += [(" ".join((*combo, word)), "variant") for combo in product(*values) for word in _wordings(obj)]
    phrases = {}
    for wording, kind in out:
        words = _content(wording)
        if words and words not in phrases:
            phrases[words] = Phrase(concept, wording, kind, words)
    return list(phrases.values())


def known_words(concept_set: ConceptSet) -> frozenset[str]:
    """Every single word the set uses for a concept (names, synonyms, subclasses, attributes) or in its templates."""
    words: set[str] = set()
    for entry in concept_set.concepts.values():
        for wording in (*_wordings(entry), *entry.subclasses):
            words.update(words_of(wording))
    for templates in concept_set.templates.values():
        for t in templates:
            words.update(words_of(t.replace("{}", " ")))
    return frozenset(words)


def template_of(concept_set: ConceptSet, concepts: Sequence[str]) -> str:
    """The wording a word is embedded in: the set's first template for the erased concepts' kind."""
    for c in concepts:
        kind = concept_set.entry(c, allow_thin=True).kind
        kind = "object" if kind == "variant" else kind
        if concept_set.templates.get(kind):
            return concept_set.templates[kind][0]
    return next((ts[0] for ts in concept_set.templates.values() if ts), GENERIC_TEMPLATE)


def unit(vector: Sequence[float]) -> tuple[float, ...]:
    norm = math.sqrt(sum(float(x) * float(x) for x in vector)) or 1.0
    return tuple(float(x) / norm for x in vector)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def nearest_anchor(vector: Sequence[float], anchors) -> tuple[str, str, float]:
    """(concept, wording, cosine) of the anchor nearest to a unit vector."""
    return max(((c, w, cosine(vector, a)) for c, w, a in anchors), key=lambda t: t[2])


def encoder_stage(concept_set: ConceptSet, concepts: Sequence[str], embed: Embedder) -> EncoderStage:
    """Anchors for every concept of the set (and the thin erased ones), and the threshold calibrated on them."""
    entries = [e for e in concept_set.concepts.values() if e.kind != "attribute"]
    entries += [concept_set.entry(c, allow_thin=True) for c in concepts if c not in concept_set.concepts]
    template = template_of(concept_set, concepts)
    rows = [(e.name, w, template.format(w)) for e in entries for w in _wordings(e)]
    rows += [(e.name, p, p) for e in entries for p in e.paraphrases]
    vectors = [unit(v) for v in embed([text for _, _, text in rows])]
    anchors = tuple((c, w, v) for (c, w, _), v in zip(rows, vectors))
    threshold, calibration = calibrate(concept_set, anchors)
    return EncoderStage(embed, template, anchors, threshold, calibration, frozenset(concepts))


def _related(concept_set: ConceptSet, a: str, b: str) -> bool:
    """A superclass and one of its members, or a variant and its object: one concept inside the other."""
    ea, eb = concept_set.concepts.get(a), concept_set.concepts.get(b)
    return (ea is not None and (b in ea.subclasses or ea.superclass == b)) or \
        (eb is not None and (a in eb.subclasses or eb.superclass == a))


@dataclass(frozen=True)
class _Pairs:
    same: list[float] = field(default_factory=list)
    distinct: list[float] = field(default_factory=list)


def calibrate(concept_set: ConceptSet, anchors) -> tuple[float, str]:
    """The cosine threshold: midway between the least similar wordings of one concept and the most similar
    distinct concepts; with no synonyms in the set, midway between the latter and 1. inf when they overlap."""
    pairs = _Pairs()
    for i, (ca, _, va) in enumerate(anchors):
        for cb, _, vb in anchors[i + 1:]:
            if ca == cb:
                pairs.same.append(cosine(va, vb))
            elif not _related(concept_set, ca, cb):
                pairs.distinct.append(cosine(va, vb))
    if not pairs.distinct:
        return math.inf, "off: the set has fewer than two distinct concepts to calibrate on"
    top = max(pairs.distinct)
    if not pairs.same:
        return (1 + top) / 2, f"midway between 1 and the most similar distinct concepts ({top:.3f})"
    low = min(pairs.same)
    if low <= top:
        return math.inf, (f"off: the encoder reads two wordings of one concept ({low:.3f}) less alike than two "
                          f"distinct concepts ({top:.3f})")
    return (low + top) / 2, (f"midway between the least similar wordings of one concept ({low:.3f}) and the most "
                             f"similar distinct concepts ({top:.3f})")
