"""The closed-form edit of cross-attention keys and values that UCE and RECE share.

For each K/V projection W: W' = (lam W + s_e sum v* c^T + s_p sum W c_j c_j^T)(lam I + s_e sum c c^T
+ s_p sum c_j c_j^T)^-1 (UCE, arXiv 2308.14761), where c are erase rows (text states the edited
model should no longer read as the concept), v* = W c_guide what the same positions of the guide
prompt give, and c_j the states of prompts to preserve. This file holds the math and the rows
(which token positions of which prompts); the method files choose the rows and how often to edit.
UNet families only (SD, SDXL): there the text states enter attn2's K/V as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from jobs.models.targets import cross_attention_modules, denoiser
from jobs.models.text_embeddings import concept_positions, encode, last_token_index
from jobs.training.concept_prompts import replace_words


@dataclass(frozen=True)
class EditRows:
    """The rows of one edit: erase states, their guides (aligned), and states to keep as they map now."""

    erase: torch.Tensor     # (n, d)
    guide: torch.Tensor     # (n, d)
    keep: torch.Tensor      # (m, d), m may be 0


def closed_form(w: torch.Tensor, c: torch.Tensor, c_guide: torch.Tensor, c_keep: torch.Tensor,
                lam: float, s_e: float, s_p: float) -> torch.Tensor:
    """The UCE update of one projection W (out x d); c, c_guide, c_keep are (n x d) rows. fp64 inside."""
    w64, c, g, k = (t.double() for t in (w, c, c_guide, c_keep))
    v_star = g @ w64.T
    lhs = lam * w64 + s_e * v_star.T @ c + s_p * (k @ w64.T).T @ k
    rhs = lam * torch.eye(w.shape[1], dtype=torch.float64) + s_e * c.T @ c + s_p * k.T @ k
    return torch.linalg.solve(rhs, lhs.T).T.to(w.dtype)  # lhs @ rhs^-1, rhs symmetric


def protected_basis(c_keep: torch.Tensor, energy: float) -> torch.Tensor:
    """U (d x r, fp64): the fewest eigenvectors of sum c_j c_j^T that hold `energy` of its trace.

    The preserved rows live (up to 1 - energy of their energy) in span(U); an update that is zero on
    span(U) leaves them as they map now. energy 0 protects nothing."""
    if energy <= 0 or len(c_keep) == 0:
        return c_keep.new_zeros((c_keep.shape[-1], 0), dtype=torch.float64)
    k = c_keep.double()
    values, vectors = torch.linalg.eigh(k.T @ k)                 # ascending
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    share = values.cumsum(0) / values.sum().clamp(min=1e-30)
    r = int((share < energy).sum()) + 1
    return vectors[:, :min(r, len(values))]


def null_space_form(w: torch.Tensor, c: torch.Tensor, c_guide: torch.Tensor, c_keep: torch.Tensor,
                    basis: torch.Tensor, lam: float, s_e: float, s_p: float) -> torch.Tensor:
    """UCE's update of W restricted to the complement of span(basis): with P = I - U U^T,

        Delta = s_e R^T C P (P A P + (I - P))^-1 P,   A = lam I + s_e C^T C + s_p K^T K,   R = (C_guide - C) W^T

    the minimiser of lam ||Delta||^2 + s_e sum ||(W + Delta) c - W c_guide||^2 + s_p sum ||Delta c_j||^2 over
    Delta with Delta U = 0: every protected direction maps exactly as before (SPEED, arXiv 2503.07392, its
    null-space constraint), the rest is UCE's trade-off. An empty basis gives closed_form. New W, fp64 inside."""
    w64, c, g, k = (t.double() for t in (w, c, c_guide, c_keep))
    eye = torch.eye(w.shape[1], dtype=torch.float64)
    p = eye - basis @ basis.T
    a = lam * eye + s_e * c.T @ c + s_p * k.T @ k
    residual = (g - c) @ w64.T                                    # (n x out)
    delta = torch.linalg.solve(p @ a @ p + (eye - p), s_e * p @ c.T @ residual).T @ p
    return (w64 + delta).to(w.dtype)


def aligned_pairs(emb_t, emb_a, mask, guide_tokens=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c, c_guide, c_before): each position from the concept on, paired with the anchor's position that
    takes its place; the words before the concept are returned to keep.

    guide_tokens[i]: how many tokens replace the concept in anchor i (None: all 0, the concept removed).
    Removed, the concept's tokens map to the anchor's next token; replaced, each maps to a token of the
    guide word (the last one when the concept has more); the later tokens map to the same words in the anchor."""
    cs, gs, before = [], [], []
    for i in range(emb_t.shape[0]):
        pos = mask[i].nonzero().flatten()
        if len(pos) == 0:
            continue
        p, n = int(pos[0]), len(pos)
        m = 0 if guide_tokens is None else int(guide_tokens[i])
        length = emb_t.shape[1]
        for j in range(p, length):
            src = (p + min(j - p, max(m - 1, 0))) if j < p + n else j - n + m
            cs.append(emb_t[i, j])
            gs.append(emb_a[i, min(src, length - 1)])
        before.append(emb_t[i, :p])
    return torch.stack(cs), torch.stack(gs), torch.cat(before)


def guided_anchors(pipe, prompts, guide: str) -> tuple[tuple[str, ...], torch.Tensor | None]:
    """The anchor prompts and, with a guide word, how many tokens it takes in each (aligned_pairs' guide_tokens):
    without one, the prompts' own anchors (the concept's words removed) and None."""
    if not guide:
        return prompts.anchor, None
    anchor = tuple(replace_words(t, prompts.words, guide) for t in prompts.target)
    concept = concept_positions(pipe, prompts.target, prompts.words).sum(1)
    return anchor, concept + last_token_index(pipe, anchor) - last_token_index(pipe, prompts.target)


def concept_rows(pipe, prompts, guide: str = "") -> EditRows:
    """The project's rows ("tuned"): every position from the concept word on of each target prompt,
    guided by the same prompt without the concept (or with `guide` in its place); kept: the preserve
    prompts and the words before."""
    mask = concept_positions(pipe, prompts.target, prompts.words)
    anchor, replaced = guided_anchors(pipe, prompts, guide)
    c, g, before = aligned_pairs(encode(pipe, prompts.target), encode(pipe, anchor), mask, replaced)
    keep = torch.cat([encode(pipe, prompts.preserve).flatten(0, 1), before]) if prompts.preserve else before
    return EditRows(c, g, keep)


def context_rows(pipe, prompts, n: int) -> torch.Tensor:
    """The states of the words after the concept in n compositions "<target> and <preserved>" (round robin
    over both lists): what another object of the same prompt reads, to keep as it maps now."""
    if n <= 0 or not prompts.preserve:
        return torch.zeros((0, encode(pipe, [""]).shape[-1]))
    texts = [f"{prompts.target[i % len(prompts.target)]} and {prompts.preserve[(i * 7) % len(prompts.preserve)]}"
             for i in range(n)]
    states, mask = encode(pipe, texts), concept_positions(pipe, texts, prompts.words)
    last = last_token_index(pipe, texts)
    rows = []
    for i in range(len(texts)):
        pos = mask[i].nonzero().flatten()
        if len(pos):
            end = int(pos[0])
            while end < mask.shape[1] and mask[i, end]:   # the target's own concept words, not the other object's
                end += 1
            rows.append(states[i, end:int(last[i]) + 1])
    return torch.cat(rows)


def last_token_rows(pipe, prompts) -> EditRows:
    """The official script's rows ("published"): one state per target prompt, its last real token, guided
    to the empty prompt's last real token (its start-of-text state); nothing kept."""
    states, empty = encode(pipe, prompts.target), encode(pipe, [""])
    c = states[torch.arange(len(states)), last_token_index(pipe, prompts.target)]
    guide = empty[0, last_token_index(pipe, [""])[0]]
    return EditRows(c, guide.expand_as(c), states.new_zeros((0, states.shape[-1])))


def kv_weights(pipe, projections) -> dict[str, torch.Tensor]:
    """"<component>.<module>.<proj>.weight" -> the current weight of each cross-attention projection named."""
    comp, net = denoiser(pipe)
    return {f"{comp}.{mname}.{proj}.weight": getattr(module, proj).weight.detach()
            for mname, module in cross_attention_modules(net).items() for proj in projections}


def edit(weights: dict[str, torch.Tensor], rows: EditRows, lam: float, s_e: float, s_p: float
         ) -> dict[str, torch.Tensor]:
    """Each weight's closed-form change (new - old) for the rows."""
    return {key: closed_form(w, rows.erase, rows.guide, rows.keep, lam, s_e, s_p) - w for key, w in weights.items()}


def regenerating_map(edited: list[torch.Tensor], original: list[torch.Tensor], reg: float) -> torch.Tensor:
    """M (d x d, fp64) with c' = M c the embedding that, through the edited projections, best gives what
    the original projections gave for c: argmin_c' sum_l ||W'_l c' - W_l c||^2 + reg ||c'||^2, i.e.
    M = (reg I + sum W'^T W')^-1 sum W'^T W (RECE, arXiv 2407.12383, its regularisation toward zero).

    The same map is an attack on any K/V edit: generate from M c and see whether the concept returns.
    """
    d = edited[0].shape[1]
    gram = reg * torch.eye(d, dtype=torch.float64)
    cross = torch.zeros(d, d, dtype=torch.float64)
    for new, old in zip(edited, original):
        new, old = new.double(), old.double()
        gram += new.T @ new
        cross += new.T @ old
    return torch.linalg.solve(gram, cross)


def regeneration_error(edited: list[torch.Tensor], original: list[torch.Tensor], c_adv: torch.Tensor,
                       c: torch.Tensor) -> float:
    """sum ||W' c' - W c||^2 / sum ||W c||^2: how closely c' through the edit reproduces c through the base."""
    num = den = 0.0
    for new, old in zip(edited, original):
        target = c.double() @ old.double().T
        num += float((c_adv.double() @ new.double().T - target).pow(2).sum())
        den += float(target.pow(2).sum())
    return num / den


def fit(w: torch.Tensor, c: torch.Tensor, v: torch.Tensor, lam: float) -> torch.Tensor:
    """argmin_W lam ||W - w||^2 + sum ||W c_i - v_i||^2 = (lam w + v^T c)(lam I + c^T c)^-1, fp64 inside.

    MACE's fusion: v are what a LoRA-edited projection gives for rows c; the result carries that edit on
    those rows and stays at w elsewhere (one LoRA or several, their rows stacked)."""
    w64, c, v = w.double(), c.double(), v.double()
    lhs = lam * w64 + v.T @ c
    rhs = lam * torch.eye(w.shape[1], dtype=torch.float64) + c.T @ c
    return torch.linalg.solve(rhs, lhs.T).T.to(w.dtype)
