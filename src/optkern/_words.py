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


def plural(n, word: str, many: str | None = None) -> str:
    """``n`` and ``word`` in its number: "1 epoch", "3 epochs", "0 epochs" (``many``: an irregular
    plural). Report lines wrote "1 epochs" and "1 optimizer(s)" for a study of one; ``n`` not a
    number (a "?" for a value an old results file lacks) takes the plural."""
    return f"{n} {word if n == 1 and not isinstance(n, bool) else many or word + 's'}"


def counted_list(word: str, items) -> str:
    """``word`` in the number of ``items``, then the items: "epoch 4", "epochs 0, 2, 4"."""
    items = list(items)
    return f"{word if len(items) == 1 else word + 's'} {', '.join(map(str, items))}"
