"""Tags per image: WordNet noun lemmas from the caption and the category words.

Tag vocabulary: every tag is a noun lemma of WordNet 3.0, lower-cased, with the
underscores of multi-word lemmas written as spaces ("sea lion", "teddy bear").
Words WordNet does not know (most proper names, brand names, numbers) give no tag.

Rules, applied in this order to a caption:

1. Tokenise: lower-case, straighten curly quotes, drop a trailing possessive
   ``'s``, and split on every character that is not a letter or an inner hyphen.
2. Compounds: two or three adjacent tokens become one tag when WordNet lists
   them, joined with ``_`` or ``-``, as a noun lemma (after WordNet's plural
   rules). Their words are then used up, so "a sea lion" gives "sea lion" and
   not "lion". A run may not start or end with a stopword.
3. Single words: a token that is a stopword or shorter than two letters gives
   nothing. Otherwise it is a noun if WordNet has a noun base form for it and
   the SemCor tagged-sense count of that noun is at least the count of every
   verb, adjective and adverb reading of the same token. This stands in for a
   part-of-speech tagger, which NLTK cannot load offline. Ties, including words
   that were never tagged in SemCor, count as nouns. The counts come from
   WordNet's ``index.sense``. "A sleeping capybara" gives "capybara" and not
   "sleeping", because the verb "sleep" outweighs the noun "sleeping".
   A phrase head is a noun too: a token with a noun base form that ends a
   phrase (its clause ends, or a preposition, conjunction or copula follows)
   opened by an article, unless
   it reads mainly as an adjective or is an "-ing" participle. "A colorful
   bow." gives "bow", although the verb "bow" outweighs the noun, because
   English noun phrases end on their head noun. Clauses end at . ! ? ; : and
   brackets.
4. Lemma: the noun base form with the highest count, the first one found by
   WordNet's morphology (``morphy``) on a tie: "cherries" gives "cherry".

Category words (folder names such as ``animals/mammals/cats``) are already
nouns, so any of them with a WordNet noun base form is kept without the
count test. A folder word that WordNet does not know is split once into two
parts of three letters or more: "masstransit" becomes "mass transit" when that
is a compound noun, else both parts when both are nouns ("arttools" gives
"art" and "tool").

Tags are de-duplicated, caption tags first, each list in order of appearance.

WordNet comes from the Debian packages ``wordnet-base`` and
``wordnet-sense-index`` (``/usr/share/wordnet``). NLTK's reader also needs a
``lexnames`` file that Debian does not ship and only reads files under its data
path, so :func:`prepare_wordnet` copies the needed files into a cache folder,
writes ``lexnames`` from the standard list of 45 lexicographer files, and adds
the cache to ``nltk.data.path``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from slime_def.errors import SlimeDefError

logger = logging.getLogger(__name__)

DEFAULT_WORDNET_SOURCE = Path("/usr/share/wordnet")
WORDNET_FILES = (
    "index.noun", "index.verb", "index.adj", "index.adv",
    "data.noun", "data.verb", "data.adj", "data.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
    "index.sense",
)

# The 45 WordNet 3.0 lexicographer files in number order, as lexnames(5WN) lists them.
# The third column of ``lexnames`` is the syntactic category: 1 noun, 2 verb,
# 3 adjective, 4 adverb.
LEXICOGRAPHER_FILES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception",
    "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_CATEGORY_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# index.sense synset types: 1 noun, 2 verb, 3 adjective, 4 adverb, 5 adjective satellite.
_SENSE_POS = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}

# English function words, pronouns, numerals and quantity words. Quantity and
# container words ("pair", "couple", "bunch") name how many, not what.
STOPWORDS = frozenset(
    """
    a an the and or but nor so yet if then than that this these those there here
    of in on at by for with without from to into onto upon over under above below
    about around across after before behind beside between through during until
    up down out off as like near inside outside
    is are was were be been being am do does did done have has had having will
    would shall should can could may might must let lets
    i me my mine we us our ours you your yours he him his she her hers it its
    they them their theirs who whom whose which what where when why how
    all any both each every either neither few many more most much some such
    no not only own same other another very too also just even still again
    ever never always often please yes hello wow oh
    one two three four five six seven eight nine ten hundred hundreds thousand
    first second third last
    pair pairs couple bunch lot lots kind sort type bit piece thing things
    something someone everyone everything anyone anything nobody nothing
    """.split()
)

ARTICLES = frozenset({"a", "an", "the"})
# Words that can follow a noun phrase's head: prepositions, conjunctions, copulas.
# Pronouns are left out, since "the light means you" has a verb before "you".
PHRASE_ENDERS = frozenset(
    """
    and or but nor of in on at by for with without from to into onto upon over under
    above below about around across after before behind beside between through during
    until inside outside near like as is are was were
    """.split()
)
# Sentence and clause punctuation: a noun phrase never runs across these.
_CLAUSE_BREAK = re.compile(r"[.!?;:()\[\]]+")

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def default_cache_dir() -> Path:
    """Return the cache root: ``$SLIME_DEF_CACHE`` or ``$XDG_CACHE_HOME/slime-def``."""
    if os.environ.get("SLIME_DEF_CACHE"):
        return Path(os.environ["SLIME_DEF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slime-def"


def lexnames_text() -> str:
    """Return the ``lexnames`` file of WordNet 3.0: number, name, category per line."""
    lines = []
    for number, name in enumerate(LEXICOGRAPHER_FILES):
        category = _CATEGORY_NUMBER[name.split(".", 1)[0]]
        lines.append(f"{number:02d}\t{name}\t{category}\n")
    return "".join(lines)


def _source_signature(source: Path) -> dict[str, list[int]]:
    signature = {}
    for name in WORDNET_FILES:
        stat = (source / name).stat()
        signature[name] = [stat.st_size, int(stat.st_mtime)]
    return signature


def prepare_wordnet(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Copy WordNet into an NLTK-readable folder and return that folder.

    Args:
      source: folder with the WordNet 3.0 database files; default
        ``/usr/share/wordnet`` (Debian ``wordnet-base`` and ``wordnet-sense-index``).
      cache_dir: cache root; default :func:`default_cache_dir`. The copy goes to
        ``<cache_dir>/nltk_data/corpora/wordnet`` and is reused while the source
        files keep their sizes and modification times.

    Raises:
      SlimeDefError: a needed source file is missing.
    """
    source = Path(source) if source else DEFAULT_WORDNET_SOURCE
    missing = [name for name in WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise SlimeDefError(
            f"WordNet files {', '.join(missing)} not found in {source}; install the Debian packages "
            "wordnet-base and wordnet-sense-index, or pass the folder that holds WordNet 3.0"
        )

    data_root = Path(cache_dir or default_cache_dir()) / "nltk_data"
    target = data_root / "corpora" / "wordnet"
    signature = {"source": str(source.resolve()), "files": _source_signature(source)}
    stamp = target / "slime-def-source.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == signature:
        return target

    # Copy into a fresh folder and rename it into place, so a crash never leaves a half copy.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))
    try:
        for name in WORDNET_FILES:
            shutil.copyfile(source / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text())
        (staging / "slime-def-source.json").write_text(json.dumps(signature))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("copied WordNet from %s to %s", source, target)
    return target


@functools.lru_cache(maxsize=4)
def wordnet_reader(source: str | None = None, cache_dir: str | None = None):
    """Return an NLTK ``WordNetCorpusReader`` over the prepared copy (cached per arguments)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    folder = prepare_wordnet(source, cache_dir)
    # NLTK only opens corpus files below a folder on nltk.data.path.
    data_root = str(folder.parent.parent)
    if data_root not in nltk.data.path:
        nltk.data.path.append(data_root)
    with warnings.catch_warnings():
        # Without the Open Multilingual WordNet the reader warns once; English is all we use.
        warnings.filterwarnings("ignore", message="The multilingual functions")
        return WordNetCorpusReader(str(folder), None)


@functools.lru_cache(maxsize=4)
def sense_counts(folder: str) -> dict[tuple[str, str], int]:
    """Return the summed SemCor tag count per (lemma, part of speech) from ``index.sense``.

    Parts of speech are ``n``, ``v``, ``a`` (adjectives and satellites) and ``r``.
    """
    counts: dict[tuple[str, str], int] = {}
    with open(Path(folder) / "index.sense", encoding="utf-8") as handle:
        for line in handle:
            sense_key, _offset, _number, tag_count = line.split()
            lemma, rest = sense_key.split("%", 1)
            key = (lemma, _SENSE_POS[rest[0]])
            counts[key] = counts.get(key, 0) + int(tag_count)
    return counts


class Tagger:
    """Extract tags from captions and category words with the rules of this module.

    Args:
      source, cache_dir: as for :func:`prepare_wordnet`.
    """

    def __init__(self, source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None):
        self.wordnet = wordnet_reader(
            str(source) if source else None, str(cache_dir) if cache_dir else None
        )
        self.counts = sense_counts(self.wordnet.root.path)
        self.source = Path(source) if source else DEFAULT_WORDNET_SOURCE

    def _bases(self, word: str, pos: str) -> list[str]:
        return self.wordnet._morphy(word, pos)

    def _best_count(self, word: str, pos: str) -> int:
        counts = [self.counts.get((base, pos), 0) for base in self._bases(word, pos)]
        return max(counts, default=0)

    def noun_lemma(self, word: str) -> str | None:
        """Return the noun lemma of a word, or None unless WordNet has it as a noun."""
        bases = self._bases(word, "n")
        if not bases:
            return None
        # max() keeps the first base among equal counts, which is morphy's order.
        return max(bases, key=lambda base: self.counts.get((base, "n"), 0))

    def is_noun(self, word: str) -> bool:
        """Apply rule 3: noun when its noun count is at least that of every other reading."""
        if word in STOPWORDS or len(word) < 2 or not self._bases(word, "n"):
            return False
        noun_count = self._best_count(word, "n")
        other_count = max(self._best_count(word, pos) for pos in ("v", "a", "r"))
        return noun_count >= other_count

    def _compound(self, words: Sequence[str]) -> str | None:
        if words[0] in STOPWORDS or words[-1] in STOPWORDS:
            return None
        for joiner in ("_", "-"):
            bases = self._bases(joiner.join(words), "n")
            if bases:
                return bases[0]
        return None

    def caption_tags(self, caption: str) -> list[str]:
        """Return the noun tags of a caption (rules 1-4), clause by clause."""
        tags: list[str] = []
        for clause in _CLAUSE_BREAK.split(caption):
            tags.extend(self._clause_tags(tokenize(clause)))
        return _dedupe(tags)

    def _clause_tags(self, words: list[str]) -> list[str]:
        tags: list[str] = []
        index = 0
        after_article = False
        while index < len(words):
            for length in (3, 2):
                run = words[index:index + length]
                lemma = self._compound(run) if len(run) == length else None
                if lemma:
                    tags.append(_tag_text(lemma))
                    index += length
                    break
            else:
                word = words[index]
                if word in STOPWORDS:
                    after_article = word in ARTICLES
                phrase_final = index + 1 == len(words) or words[index + 1] in PHRASE_ENDERS
                if self.is_noun(word) or (after_article and phrase_final and self.is_phrase_head(word)):
                    tags.append(_tag_text(self.noun_lemma(word)))
                index += 1
        return tags

    def is_phrase_head(self, word: str) -> bool:
        """Apply the phrase-head part of rule 3 to a token that ends an article's phrase.

        The token needs a noun base form, an adjective count no larger than its
        noun count ("red" stays out of "a red and white flower"), and must not be
        a participle ("dancing" in "a woman dancing in a gown").
        """
        if word in STOPWORDS or len(word) < 2 or not self._bases(word, "n"):
            return False
        if self._best_count(word, "a") > self._best_count(word, "n"):
            return False
        verb_bases = self._bases(word, "v")
        return not (word.endswith("ing") and verb_bases and word not in verb_bases)

    def category_tags(self, words: Iterable[str]) -> list[str]:
        """Return tags from folder or category words, split on ``_``, ``-`` and spaces."""
        tags: list[str] = []
        for raw in words:
            for word in re.split(r"[_\-\s]+", raw.lower()):
                if not word.isalpha() or word in STOPWORDS:
                    continue
                lemma = self.noun_lemma(word)
                tags.extend([lemma] if lemma else self._split_joined(word))
        return _dedupe(_tag_text(tag) for tag in tags)

    def _split_joined(self, word: str) -> list[str]:
        for cut in range(3, len(word) - 2):
            left, right = word[:cut], word[cut:]
            compound = self._compound([left, right])
            if compound:
                return [compound]
            left_lemma, right_lemma = self.noun_lemma(left), self.noun_lemma(right)
            if left_lemma and right_lemma:
                return [left_lemma, right_lemma]
        return []

    def tags(self, caption: str, category_words: Iterable[str] = ()) -> list[str]:
        """Return caption tags followed by category tags, without repeats."""
        return _dedupe(self.caption_tags(caption) + self.category_tags(category_words))

    def in_vocabulary(self, tag: str) -> bool:
        """Return whether ``tag`` is a WordNet noun lemma in this module's text form."""
        lemma = tag.replace(" ", "_")
        return tag == tag.lower() and "n" in self.wordnet._lemma_pos_offset_map.get(lemma, {})


def tokenize(text: str) -> list[str]:
    """Split a caption into lower-case words (rule 1)."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"'s\b", "", text)
    words = []
    for token in _WORD.findall(text):
        # Hyphenated words are split; the compound rule rejoins parts that
        # WordNet lists with a hyphen, such as "t-shirt".
        words.extend(token.split("-"))
    return words


def _tag_text(lemma: str) -> str:
    return lemma.replace("_", " ").lower()


def _dedupe(tags: Iterable[str]) -> list[str]:
    seen, out = set(), []
    for tag in tags:
        if tag and tag not in seen:
            seen.add(tag)
            out.append(tag)
    return out
