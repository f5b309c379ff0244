"""Caption tokenising, the WordNet copy and tag extraction on fixed captions."""

from __future__ import annotations

from pathlib import Path

import pytest

from slime_def.data.tags import LEXICOGRAPHER_FILES, lexnames_text, tokenize

WORDNET = Path("/usr/share/wordnet")


def test_lexnames_has_45_numbered_lines():
    lines = lexnames_text().splitlines()
    assert len(lines) == 45 == len(LEXICOGRAPHER_FILES)
    assert lines[0] == "00\tadj.all\t3"
    assert lines[5] == "05\tnoun.animal\t1"
    assert lines[44] == "44\tadj.ppl\t3"


def test_tokenize_cases():
    assert tokenize("A knight\u2019s helmet.") == ["a", "knight", "helmet"]
    assert tokenize("A red high-heeled shoe!") == ["a", "red", "high", "heeled", "shoe"]
    assert tokenize("A calculator.  6x7=42") == ["a", "calculator", "x"]


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    if not (WORDNET / "index.sense").is_file():
        pytest.skip("WordNet not found; install the Debian packages wordnet-base and wordnet-sense-index")
    from slime_def.data.tags import Tagger

    return Tagger(source=WORDNET, cache_dir=tmp_path_factory.mktemp("cache"))


CAPTION_CASES = [
    ("A zebra.", ["zebra"]),
    ("A sleeping capybara.", ["capybara"]),
    ("Some cherries.", ["cherry"]),
    ("A sea lion.", ["sea lion"]),
    ("Teddy bear.", ["teddy bear"]),
    ("A t shirt.", ["t-shirt"]),
    ("A washing machine.", ["washing machine"]),
    ("A spider playing computer games.", ["spider", "computer game"]),
    ("A knight\u2019s helmet.", ["knight", "helmet"]),
    ("A ripe, red tomato!", ["tomato"]),
    ("A colorful bow.", ["bow"]),
    ("A spider dancing with a fly.", ["spider", "fly"]),
    ("A red and white anemone flower.", ["anemone", "flower"]),
    ("A wheelie bin! Give me your trash!", ["bin", "trash"]),
    ("The red light means you must stop now.", ["red light"]),
    ("A chick inside an egg.", ["chick", "egg"]),
    ("Two wild boars.", ["wild boar"]),
    ("A stethoscope lets your doctor listen to your heart and lungs.",
     ["stethoscope", "doctor", "heart", "lung"]),
]


@pytest.mark.build
@pytest.mark.parametrize("caption, expected", CAPTION_CASES)
def test_caption_tags(tagger, caption, expected):
    assert tagger.caption_tags(caption) == expected


@pytest.mark.build
def test_category_tags_split_joined_folder_names(tagger):
    assert tagger.category_tags(["animals", "mammals", "cats", "cartoon"]) == ["animal", "mammal", "cat", "cartoon"]
    assert tagger.category_tags(["arttools"]) == ["art", "tool"]
    assert tagger.category_tags(["newyears"]) == ["new year"]
    assert tagger.category_tags(["body_parts"]) == ["body", "part"]


@pytest.mark.build
def test_tags_caption_first_without_repeats(tagger):
    assert tagger.tags("A cat.", ["animals", "mammals", "cats"]) == ["cat", "animal", "mammal"]


@pytest.mark.build
def test_every_tag_in_vocabulary(tagger):
    for caption, expected in CAPTION_CASES:
        for tag in expected:
            assert tagger.in_vocabulary(tag), tag
    assert not tagger.in_vocabulary("tamworth")


@pytest.mark.build
def test_wordnet_copy_reused(tagger, tmp_path_factory):
    from slime_def.data.tags import prepare_wordnet

    folder = prepare_wordnet(WORDNET, tagger.wordnet.root.path.rsplit("/nltk_data", 1)[0])
    assert (folder / "lexnames").read_text() == lexnames_text()
    assert (folder / "index.sense").stat().st_size == (WORDNET / "index.sense").stat().st_size


def test_missing_wordnet_raises(tmp_path):
    from slime_def.data.tags import prepare_wordnet
    from slime_def.errors import SlimeDefError

    with pytest.raises(SlimeDefError, match="wordnet-base"):
        prepare_wordnet(tmp_path, tmp_path / "cache")
