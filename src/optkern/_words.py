"""The indefinite article of a word only known at run time (a type or dtype name in a message):
messages read "a int", "a Adam" and "a ndarray" where they wrote "a {name}"."""

from __future__ import annotations

# an initialism (SGD, LBFGS, NAdam) is read letter by letter: these letters' names start with a vowel
_VOWEL_LETTERS = frozenset("AEFHILMNORSX")


def article(word: str) -> str:
    """``word`` with "a" or "an" before it, by how it is read: "an int", "a uint8", "an ndarray",
    "an SGD", "a float32"."""
    if word[:2].isupper():
        return f"{'an' if word[0] in _VOWEL_LETTERS else 'a'} {word}"
    low = word.lower()
    vowel = low[:1] in ("a", "e", "i", "o") or (low[:1] == "u" and not low.startswith(("uint", "uni", "us")))
    return f"{'an' if vowel or low.startswith('nd') else 'a'} {word}"
