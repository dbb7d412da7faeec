"""A tiny BLIP-VQA for the toy world: the `vqa` judge's weights on the embedded default, trained here.

    python -m jobs.toyworld.train_vqa [--out DIR] [--steps N]     # 15 min on one core, deterministic

The shipped weights (jobs/toyworld/weights/vqa, 1.2 MB) are this script's output at its defaults. On 600
fresh scenes (seed 10000, half through the VAE) they answer 0.917 of object questions right (600), 0.965 of
attribute questions (600) and 0.953 of leakage questions (300, pair scenes), as the script prints at the end.

Images are renders as train_clip makes them (half passed through the toy pipeline's VAE), single objects
and the two-object pair scenes of pair prompts. Questions are the judge's own (jobs/validation/judges/vqa.py):
"is there a <word> in the picture?" with an object, superclass or synonym word (a "no" names a sibling of
the same superclass half the time, so fine distinctions are learned), "is there something <value> in the
picture?", and the leakage question "is the <object> <colour>?" (a "no" names the other object's colour
half the time: which object carries the colour, not whether the colour is there). Answers are balanced
yes/no. The loss is cross-entropy on the answer decoder's first token after [DEC], the logits the judge
reads. Saved as a `transformers` BLIP directory with its own WordPiece vocabulary (specials, "yes"/"no",
question words, the world's words), so the judge loads it like Salesforce/blip-vqa-base.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jobs.toyworld.prompts import pair_object
from jobs.toyworld.render import place_pair, place_single, render
from jobs.toyworld.train_clip import through_vae
from jobs.toyworld.world import ObjectSpec, World, load_world
from jobs.validation.judges.pixels import normalisation, pixel_batch
from jobs.validation.judges.vqa import LEAKAGE, QUESTIONS, first_answer_logits
from jobs.toyworld.judge_training import one_cycle, save, start
from erasecore.models import toyworld_dir

SEED = 0
WIDTH, LAYERS, HEADS, MAX_POSITIONS = 64, 2, 4, 32
# 8-pixel patches (16 per image; the toy CLIP uses 4): the text side cross-attends to every patch for every
# question, so a step costs about half, and at 4000 steps objects came out better (0.78 against 0.72)
PATCH = 8
# BLIP's initialiser (0.02; 1e-10 for the vision tower's position and class embeddings) is sized for width
# 768. At width 64 a linear probe on the vision tower read 15% of objects after 400 steps, at 0.1 88%
INIT_STD = 0.1
# The vision tower runs once for several questions (the text side costs most), and one picture asked about
# several words contrasts them
PER_IMAGE = 8
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
ANSWERS = ("yes", "no")
KINDS = ("object", "attribute", "leakage")


@dataclass(frozen=True)
class Question:
    """One training or test question about one image, with its true answer."""

    image: int
    text: str
    yes: bool
    kind: str   # one of KINDS


def build_tokenizer(world: World, out_dir: Path):
    """A BertTokenizer whose every word is one token: specials, the answers, every question word, the world's words."""
    from transformers import BertTokenizer

    words = list(dict.fromkeys([*SPECIALS, *ANSWERS, "?", *_question_words(), *world.vocabulary()]))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("".join(w + "\n" for w in words))
    # BLIP's layout: [DEC] starts the answer, [SEP] ends a text (Salesforce/blip-vqa-base names them the same).
    return BertTokenizer(str(out_dir / "vocab.txt"), bos_token="[DEC]", model_max_length=MAX_POSITIONS)


def _question_words() -> list[str]:
    """The words of every question the judge asks, its placeholders left out."""
    return re.findall(r"[a-z]+", re.sub(r"\{\w*\}", " ", " ".join((*QUESTIONS.values(), LEAKAGE))))


def build_blip(tokenizer):
    from transformers import BlipConfig, BlipForQuestionAnswering

    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=WIDTH, encoder_hidden_size=WIDTH, intermediate_size=2 * WIDTH,
                num_hidden_layers=LAYERS, num_attention_heads=HEADS, max_position_embeddings=MAX_POSITIONS,
                pad_token_id=ids("[PAD]"), bos_token_id=ids("[DEC]"), sep_token_id=ids("[SEP]"),
                eos_token_id=ids("[SEP]"), initializer_range=INIT_STD)
    vision = dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  image_size=32, patch_size=PATCH, initializer_range=INIT_STD)
    return BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision, initializer_range=INIT_STD))


def scenes(world: World, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[ObjectSpec, ...]]]:
    """`n` renders, half single objects (any spec), half pair scenes (two small solid objects, distinct shapes)."""
    specs = world.all_specs()
    images, contents = [], []
    for i in range(n):
        if i % 2 == 0:
            spec = specs[int(rng.integers(len(specs)))]
            placed, content = place_single(world, spec, rng), (spec,)
        else:
            a, b = rng.choice(len(world.objects), size=2, replace=False)
            colours = world.values("colour")
            content = tuple(pair_object(world.objects[int(k)], colours[int(rng.integers(len(colours)))]) for k in (a, b))
            placed = place_pair(world, *content, rng)
        images.append(render(world, placed))
        contents.append(content)
    return np.stack(images), contents


def ask(world: World, image: int, content: tuple[ObjectSpec, ...], kind: str, rng: np.random.Generator) -> Question:
    """A balanced question of `kind` about the scene `content`: yes or no with probability 1/2."""
    yes = bool(rng.random() < 0.5)
    if kind == "object":
        return Question(image, QUESTIONS["object"].format(_shape_word(world, content, yes, rng)), yes, kind)
    if kind == "attribute":
        return Question(image, QUESTIONS["attribute"].format(_attribute_word(world, content, yes, rng)), yes, kind)
    target = content[int(rng.integers(len(content)))]
    colour = target.colour if yes else _wrong_colour(world, target, content, rng)
    return Question(image, LEAKAGE.format(other=target.shape, attribute=colour), yes, kind)


def _shape_word(world: World, content: tuple[ObjectSpec, ...], yes: bool, rng: np.random.Generator) -> str:
    """A word naming a present shape (yes) or an absent one (no: a present shape's sibling half the time)."""
    present = {s.shape for s in content}
    supers = {world.superclass_of(s) for s in present}
    if yes:
        shape = sorted(present)[int(rng.integers(len(present)))]
        if rng.random() < 0.25:
            return world.superclass_of(shape)
        return _pick(world.words_for_object(shape), rng)
    if rng.random() < 0.5:
        siblings = sorted(o for s in supers for o in world.superclasses[s] if o not in present)
        if siblings:
            return _pick(world.words_for_object(_pick(siblings, rng)), rng)
    if rng.random() < 0.2:
        return _pick(sorted(set(world.superclasses) - supers), rng)
    return _pick(world.words_for_object(_pick(sorted(set(world.objects) - present), rng)), rng)


def _attribute_word(world: World, content: tuple[ObjectSpec, ...], yes: bool, rng: np.random.Generator) -> str:
    kind = ("colour", "size", "material")[int(rng.integers(3))]
    present = sorted({s.attribute(kind) for s in content})
    absent = sorted(set(world.values(kind)) - set(present))
    if not yes and not absent:   # a pair of two colours still leaves two absent; sizes and materials may not
        kind, present, absent = "colour", sorted({s.colour for s in content}), sorted(
            set(world.values("colour")) - {s.colour for s in content})
    return _pick(present if yes else absent, rng)


def _wrong_colour(world: World, target: ObjectSpec, content: tuple[ObjectSpec, ...], rng: np.random.Generator) -> str:
    """Another colour than the target's: the other object's half the time, if it differs (the binding case)."""
    others = [s.colour for s in content if s.colour != target.colour]
    if others and rng.random() < 0.5:
        return others[0]
    return _pick([c for c in world.values("colour") if c != target.colour], rng)


def _pick(options, rng: np.random.Generator):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def questions_for(world: World, contents: list[tuple[ObjectSpec, ...]], rng: np.random.Generator,
                  kinds: tuple[str, ...] = KINDS) -> list[Question]:
    """One question per image and kind; leakage only on pair scenes (the scenes leakage items render)."""
    return [ask(world, i, c, k, rng) for i, c in enumerate(contents) for k in kinds if k != "leakage" or len(c) == 2]


def dataset(world: World, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[ObjectSpec, ...]]]:
    """`n` scenes, the second half passed through the toy VAE (the blur a generated image has)."""
    images, contents = scenes(world, n, rng)
    images[n // 2:] = through_vae(images[n // 2:])
    return images, contents


def train(out: Path, steps: int = 8000, batch: int = 24, lr: float = 1e-3, n: int = 6000, log=print) -> Path:
    rng, world, tokenizer = start(SEED, build_tokenizer)
    model = build_blip(tokenizer)
    images, contents = dataset(world, n, rng)
    x = pixel_batch(images, 32, *normalisation(out))   # exactly the judge's pixels (out has no preprocessor config)
    answers = torch.tensor(tokenizer.convert_tokens_to_ids(list(ANSWERS)))
    opt, sched = one_cycle(model, lr, steps)
    model.train()
    seen: list[tuple[str, bool]] = []
    for step in range(steps):
        idx = rng.integers(n, size=batch)
        qs = [ask(world, int(i), contents[i], _kind(contents[i], rng), rng) for i in idx for _ in range(PER_IMAGE)]
        loss, right = _loss(model, tokenizer, x[idx], qs, answers)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        seen += [(q.kind, r) for q, r in zip(qs, right)]
        if (step + 1) % 250 == 0 or step == steps - 1:
            log(f"vqa step {step + 1} loss {loss.item():.3f} train accuracy " + ", ".join(
                f"{k} {np.mean([r for kk, r in seen if kk == k]):.2f}" for k in KINDS))
            seen = []
    return save(model, tokenizer, out)


def _loss(model, tokenizer, pixels: torch.Tensor, qs: list[Question], answers: torch.Tensor):
    """(cross-entropy of the first answer token, whether each answer was right); PER_IMAGE questions per image."""
    ids = tokenizer([q.text for q in qs], padding=True, return_tensors="pt")
    states = model.vision_model(pixel_values=pixels)[0].repeat_interleave(PER_IMAGE, 0)
    logits = first_answer_logits(model, states, ids.input_ids, ids.attention_mask)
    truth = torch.tensor([0 if q.yes else 1 for q in qs])
    right = (logits[:, answers].argmax(1) == truth).tolist()
    return F.cross_entropy(logits, answers[truth]), right   # over the whole vocabulary: yes/no beat every word


def _kind(content: tuple[ObjectSpec, ...], rng: np.random.Generator) -> str:
    """Object questions most often (every suite item but leakage asks one); leakage mostly on pair scenes."""
    r = rng.random()
    if r < (0.45 if len(content) == 2 else 0.15):
        return "leakage"
    return "attribute" if r > 0.85 else "object"


def accuracy(judge, world: World, n: int = 600, seed: int = 10_000) -> dict[str, tuple[float, int]]:
    """kind -> (share of `n` fresh scenes' questions the judge answers right, how many), per question kind."""
    rng = np.random.default_rng(seed)
    images, contents = dataset(world, n, rng)
    qs = questions_for(world, contents, rng)
    p = judge.yes_probability(images[[q.image for q in qs]], [q.text for q in qs])
    right = np.array([(pi >= judge.threshold) == q.yes for pi, q in zip(p, qs)])
    return {k: (float(right[[q.kind == k for q in qs]].mean()), sum(q.kind == k for q in qs)) for k in KINDS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=toyworld_dir() / "vqa")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=24, help="images per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--measure", type=int, default=600, help="fresh scenes to measure accuracy on (0: none)")
    args = ap.parse_args(argv)
    # One thread: the same weights on any machine (the thread count changes the order of float sums), and
    # matrices this small gain little from a second core
    torch.set_num_threads(1)
    start = time.monotonic()
    out = train(args.out, args.steps, args.batch, args.lr)
    print(f"wrote {out} in {time.monotonic() - start:.0f} s")
    if args.measure:
        from erasecore.concepts import load_concept_set
        from jobs.validation.judges import load_judge

        judge = load_judge("vqa", load_concept_set("toyworld"), str(out))
        for kind, (acc, count) in accuracy(judge, load_world(), args.measure).items():
            print(f"{kind} accuracy {acc:.3f} on {count} questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
