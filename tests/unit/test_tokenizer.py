import pytest

from jobs.toyworld.tokenizer import build_tokenizer, check_prompt
from jobs.toyworld.world import UnknownConceptError, load_world


def test_every_vocabulary_word_is_one_token(tmp_path):
    w = load_world()
    tok = build_tokenizer(w, tmp_path)
    for word in w.vocabulary():
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, word
    ids = tok("a small crimson hollow box").input_ids
    assert ids[0] == 0 and ids[-1] == 1 and len(ids) == 7


def test_unknown_words_are_rejected_with_a_clear_error():
    w = load_world()
    check_prompt(w, "a photo of a big red star and a blue heart")
    with pytest.raises(UnknownConceptError, match="unknown word 'car'"):
        check_prompt(w, "a red car")
