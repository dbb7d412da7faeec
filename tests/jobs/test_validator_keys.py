from jobs.toyworld.world import load_world
from jobs.toyworld.suite import build_suite
from jobs.validation.validator import stratified_keys


def test_stratified_keys_cover_every_group_early_and_every_key_once():
    suite = build_suite(load_world(), "square", ("star",))
    keys = stratified_keys(suite, seeds=2)
    assert len(keys) == len(set(keys)) == 2 * len(suite.items)
    first = {suite.items[i].group for i, _ in keys[:len(suite.groups())]}
    assert first == set(suite.groups())
