from jobs.toyworld.world import load_world
from jobs.toyworld.suite import build_suite
from jobs.validation.validator import stratified_keys


def test_stratified_keys_cover_every_group_early_and_every_key_once():
    suite = build_suite(load_world(), "square", ("star",))
    keys = stratified_keys(suite, seeds=2)
    assert len(keys) == len(set(keys)) == 2 * len(suite.items)
    first = {suite.items[i].group for i, _ in keys[:len(suite.groups())]}
    assert first == set(suite.groups())


def test_a_confirmation_gate_draws_other_noise_and_other_base_images():
    """seed_offset (a search's confirmation on fresh seeds) changes every image and the baseline cache's key."""
    import dataclasses

    import numpy as np

    from erasecore.contracts import ValidationSpec
    from jobs.models.loader import load_pipeline
    from jobs.validation.validator import BaselineCache, generate

    suite = build_suite(load_world(), "square", ())
    spec = ValidationSpec(inference_steps=4)
    fresh = dataclasses.replace(spec, seed_offset=3000)
    keys = stratified_keys(suite, seeds=1)[:4]
    pipe = load_pipeline("toyworld")
    same, again, other = (generate(pipe, suite, keys, s) for s in (spec, spec, fresh))
    assert np.array_equal(same, again) and all(not np.array_equal(a, b) for a, b in zip(same, other))
    cache = BaselineCache("")
    assert cache.key("toyworld", suite, fresh) != cache.key("toyworld", suite, spec)
