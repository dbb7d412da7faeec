"""Writing progress records changes nothing a fine-tune computes: same delta bit for bit, same RNG state after."""
import pytest
import torch

from jobs.methods import registry
from jobs.methods.interface import EraseInputs
from jobs.training.concept_prompts import text_concept_prompts
from erasecore.phase_progress import ProgressWriter, read_records
from tests.fixtures.tiny_pipelines import tiny_sd_pipeline

# Every fine-tune reports progress: the guided loss (esd-x), the attention loss (fmn), the LoRA scaffold (lora,
# spm, mace: its LoRA is trained between two closed forms).
HPARAMS = {m: {"steps": 5, "batch": 2} for m in ("esd-x", "fmn", "lora", "spm", "mace")}


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return tiny_sd_pipeline(0)


def erased(pipe, method: str, progress):
    torch.manual_seed(0)
    inputs = EraseInputs("star", text_concept_prompts("star", preserve=("heart",)), HPARAMS[method], seed=0,
                         log=lambda *a: None, progress=progress)
    out = registry.erase(method, pipe, inputs)
    return out.tensors, torch.get_rng_state()


@pytest.mark.parametrize("method", sorted(HPARAMS))
def test_progress_does_not_change_the_delta_or_the_random_state(pipe, method, tmp_path):
    plain, plain_rng = erased(pipe, method, None)
    watched, watched_rng = erased(pipe, method, ProgressWriter(tmp_path, "erase"))
    assert plain.keys() == watched.keys() and all(torch.equal(plain[k], watched[k]) for k in plain)
    assert torch.equal(plain_rng, watched_rng)
    records = read_records(tmp_path, "erase")
    assert [r.step for r in records] == [1, 2, 3, 4, 5] and {r.total for r in records} == {5}   # steps // 100 -> 1
    assert all(r.loss is not None and r.grad_norm is not None and r.lr > 0 and r.steps_per_s > 0
               and r.peak_mem_mb > 0 for r in records)
