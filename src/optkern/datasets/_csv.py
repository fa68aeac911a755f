"""Reading a data file's CSV: a header line or not, word or number labels, the label column by
index or name, and errors naming the line or column at fault (``load_file`` checks the rest)."""

from __future__ import annotations

import collections
import csv
import re

import numpy as np

from .._cli_numbers import is_real, whole
from ._errors import DataError

_NONFINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)


def _is_number(field: str) -> bool:
    """A number as loadtxt reads one: ASCII digits, or nan / inf (``_features`` names those). Python's
    ``float()`` also takes ``1_000`` and other scripts' digits (``١``), which loadtxt refuses: such a
    feature cell read as a number on the word-label path, and turned the file's number labels into
    class names (sorted as text: ``10`` before ``2``)."""
    return is_real(field) or _NONFINITE.fullmatch(field.strip()) is not None


def _unquote(field: str) -> str:
    """A CSV field without its enclosing double quotes (a doubled quote inside stands for one)."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def _data(line: str) -> str:
    """The part of a file's line that is data: up to a '#' outside a quoted field (a double quote
    opens one only as a field's first character, as in ``_row``), and '' where that is blank
    (spaces, an indented comment). The one cut of every line: the header rule, the row check and
    the body's np.loadtxt (``comments=None``: given these parts) read the same text. loadtxt keeps
    a quoted '#' and read a line of spaces as a row of one field, where ``split("#")`` and
    ``strip()`` cut the one and skipped the other (hunt 48a)."""
    if "#" in line and '"' not in line:  # (no quoted field: the first '#' cuts; the walk below,
        return _data(line.partition("#")[0])  # a character at a time, took 1.3 s for 200k such lines)
    if "#" in line:
        start, quoted, i = True, False, 0
        while i < len(line):
            c = line[i]
            if quoted:
                if c == '"':
                    if line.startswith('"', i + 1):  # (a doubled quote inside: one quote)
                        i += 1
                    else:
                        quoted = False
            elif c == '"' and start:
                quoted = True
            elif c == "#":
                line = line[:i]
                break
            start = c == "," and not quoted
            i += 1
    return line if line.strip() else ""


# A line whose every quoted field closes on it: a field opens with a double quote only as its first
# character, closes at a quote that no second one follows (``""`` inside stands for one), and
# goes on unquoted up to the comma (``_row``'s and loadtxt's reading).
_FIELD = r'(?:"(?:[^"]|"")*"(?!")[^,]*|(?!")[^,]*)'
_QUOTES_CLOSE = re.compile(rf"{_FIELD}(?:,{_FIELD})*")


def _check_lines(lines: list[str], path: str) -> None:
    """DataError naming the first of ``lines`` (``_data``'s parts) with a quoted field that does not
    close on it, or a NUL character. np.loadtxt reads such a field on into the next lines, up to
    the next quote: a file cut short in a quoted field, or one label typed ``"b``, lost every row
    after it into one cell, silently. NULs (a file written in part when the machine stopped) at
    a cell's end were dropped by NumPy's strings, silently, after they had made the label column
    read as words, sorted as text (hunt 48a)."""
    for n, line in enumerate(lines, 1):
        if "\x00" in line:
            raise DataError(f"{path}: line {n}: a NUL character (not a text line: a file written in part?)")
        if '"' in line and not _QUOTES_CLOSE.fullmatch(line):
            raise DataError(
                f"{path}: line {n}: a double quote opens a field that does not close on its line (a file cut "
                'short? A quote inside a quoted field is written twice: "")'
            )


def _row(line: str, where: str) -> list[str]:
    """A CSV line's fields as np.loadtxt cuts the data rows (the one cut of every line: header,
    first line and rows), or DataError naming ``where`` (the file and line): Python's csv reader's
    ``_csv.Error`` (a field over its 128 KiB limit) named neither. A double quote opens a quoted
    field only as its first character: after ``, `` it is part of the field, as in loadtxt,
    pandas and RFC 4180 (with csv's ``skipinitialspace`` the header rule cut
    ``x, "height, cm", label`` in 3 and the rows' reader and their check in 4, hunt 48a)."""
    try:
        return next(csv.reader([line], quotechar='"'), [])
    except csv.Error as e:
        raise DataError(f"{where}: not readable as CSV ({e})") from None


def _fields(line: str, where: str) -> list[str]:
    """A CSV line's fields as the body's read cuts them (a comma inside double quotes is no
    separator: ``"height, cm"`` is one name), stripped and unquoted; ``where``: the file and line,
    for ``_row``'s error. Cut at every comma, that header had one name more than the rows had
    columns (refused), and the name could not be found by ``label_column``."""
    return [_unquote(f.strip()) for f in _row(line, where)]


def _pandas_numbers(fields: list[str]) -> bool:
    """Whether ``fields`` are pandas' column numbers ``0,1,...,n-1`` with n >= 3
    (``pd.DataFrame(array).to_csv(index=False)``'s header; two columns ``0,1`` may well be a sample)."""
    return len(fields) >= 3 and fields == [str(i) for i in range(len(fields))]


def _python_number(field: str) -> bool:
    """Whether Python's ``float()`` reads ``field`` (``1_0`` as 10, ``\u0661`` as 1): a number
    written in a way loadtxt refuses in the body, not a column name."""
    try:
        float(field)
    except ValueError:
        return False
    return True


def _words_at(line: str, where: str) -> list[int]:
    """The positions of a CSV line's fields that are not numbers (a number in double quotes is one).
    A field only Python reads as a number is no word either: taken for a name, ``1_0,2,3`` made
    the first line a header and its sample was dropped unseen, where the same cell on any later
    line is refused, named (:func:`_csv_with_word_labels`); read as data, it is refused the same."""
    return [i for i, f in enumerate(_fields(line, where)) if f and not (_is_number(f) or _python_number(f))]


def _is_header(line: str, where: str, second: str | None = None, where2: str = "") -> bool:
    """Whether the first line is a header (``where``, ``where2``: the file and the lines', for
    errors), by this rule (load_file's docstring says it too):

    1. pandas' column numbers ``0,1,...,n-1`` (n >= 3: ``pd.DataFrame(array).to_csv(index=False)``)
       are a header (read as a sample, that line added a class of one sample, label n-1; two
       columns ``0,1`` may well be a sample);
    2. a line whose fields are all numbers is data -- in double quotes too (``csv.QUOTE_ALL``,
       which loadtxt reads as numbers), and ``nan``, ``1e-3``; so is a field only Python reads as
       a number (``1_0``, ``\u0661``: refused by the body's read, naming the cell, as on any line);
    3. a line whose words all stand where the ``second`` line has words too is data: a headerless
       file's text labels (iris' ``5.1,3.5,1.4,0.2,setosa``);
    4. any other line with a word is a header, and must name every column with a word (fields cut
       as the body's are, ``_fields``: ``"height, cm"`` is one name): one that
       also holds numbers (``0,0,a`` above rows of numbers) is refused by ``_read_csv`` as neither
       (read as names, its sample was dropped unseen and ``a`` named the label column)."""
    if _pandas_numbers(_fields(line, where)):
        return True
    words = _words_at(line, where)
    return bool(words) and (second is None or not set(words) <= set(_words_at(second, where2)))


def _header_numbers(header: list[str]) -> list[str]:
    """The numbers among a header's names (none in a header but pandas' ``0,1,...,n-1``)."""
    if _pandas_numbers(header):
        return []
    return [h for h in header if _is_number(h)]


def _check_header(header, ncols: int, line: int, path: str, label_column=None) -> None:
    """A header names every column once it is one (``_is_header``'s rule 4): one name short or
    over was ignored, silently (``label`` above three columns: the names went unread, the label
    was the last column)."""
    if header is not None and len(header) != ncols:
        # (a name still opening with a quote: one after a space, which quotes nothing, _row)
        quote = any(h.startswith('"') for h in header)
        raise DataError(
            f"{path}: the header line (line {line}) has {len(header)} names for {ncols} columns: a header "
            "line names every column"
            + ("" if label_column is None else f" (label column {str(label_column)!r})")
            + ("; a double quote after a space quotes nothing (write ',\"name\"')" if quote else "")
        )


def _loadtxt(body: list[str], **kw) -> np.ndarray:
    """The data rows ``body`` (``_data``'s parts, none blank) as np.loadtxt reads a CSV: the comments
    are cut already. Blank lines are left out, not given as "": loadtxt's string read warned of
    ``max_rows`` (a UserWarning naming an argument no one gave) on each."""
    return np.loadtxt(body, delimiter=",", ndmin=2, quotechar='"', comments=None, **kw)


def _read_csv(path: str, label_column=None) -> tuple[np.ndarray, np.ndarray, str, list[str]]:
    """Features, labels, the label column's name and notes on columns read exactly
    (:func:`_exact_integer_features`); ``label_column`` is an index (negative counts from the end)
    or a header name (default: the last)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:  # -sig: a BOM would make row 1 look like a header
            lines = [_data(line) for line in fh]  # (line numbers kept: a blank line is "")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    _check_lines(lines, path)
    content = [i for i, line in enumerate(lines) if line]
    if not content:
        raise DataError(f"{path}: the file is empty")
    skip, header = 0, None
    second = lines[content[1]] if len(content) > 1 else None
    where = f"{path}: line {content[0] + 1}"
    where2 = f"{path}: line {content[1] + 1}" if len(content) > 1 else ""
    if _is_header(lines[content[0]], where, second, where2):
        if len(content) == 1:  # loadtxt would only warn and return nothing
            raise DataError(f"{path}: only a header line, no data rows")
        skip = content[0] + 1
        # names as R's write.csv and spreadsheets write them, in double quotes: without them, so that
        # label_column="label" finds "label"
        header = _fields(lines[content[0]], where)
        numbers = _header_numbers(header)
        if numbers:
            # Names and numbers: the first data row, taken for a header because a ragged second
            # line (``1,2,setosa`` then ``3,4``) has no word where it has one (that error, naming the
            # odd line, is the one to give), or a line that is neither (_is_header's rule 4).
            _check_row_lengths(lines, content[0], path)
            raise DataError(
                f"{path}: line {content[0] + 1} holds both names ({', '.join(h for h in header if h not in numbers)})"
                f" and numbers ({', '.join(numbers)}): neither a header (names for every column) nor a data "
                "row like the next (which has numbers where it has names)"
            )
    body = [line for line in lines[skip:] if line]
    try:
        d = _loadtxt(body)
    except ValueError as e:
        _check_row_lengths(lines, skip, path)
        return _csv_with_word_labels(body, header, label_column, path, e, content[0] + 1)
    _check_header(header, d.shape[1], content[0] + 1, path, label_column)
    j = _label_index(label_column, header, d.shape[1], path)
    name = header[j] if header and len(header) == d.shape[1] else f"column {j + 1}"

    def text(c: int) -> np.ndarray:
        return _loadtxt(body, dtype=str, usecols=[c])[:, 0]

    x, notes = _exact_integer_features(np.delete(d, j, axis=1), j, text)
    return x, _integer_labels(lambda: text(j), d[:, j], path), name, notes


def _check_row_lengths(lines, skip: int, path: str) -> None:
    """Every data row has as many fields as most of them, or DataError naming the first that does
    not by its line in the file. With word labels the numeric read's error was the first label's
    ("could not convert string 'x' ... column 3"), and numpy's own "row 3" counts data rows only
    (blank and comment lines and the header skipped) and suggests its ``usecols``."""
    rows = []  # (line number, fields)
    for n, line in enumerate(lines[skip:], skip + 1):
        if line:  # (``_data``: blank and comment lines are "")
            rows.append((n, len(_row(line, f"{path}: line {n}"))))
    counts = collections.Counter(k for _, k in rows)  # (most_common: a tie goes to the first row's)
    usual, many = counts.most_common(1)[0] if rows else (0, 0)
    for n, k in rows:
        if k != usual:
            raise DataError(
                f"{path}: rows have different numbers of columns: line {n} has {k} fields where "
                f"{many} of the {len(rows)} data rows have {usual}"
            )


def _label_index(label_column, header, ncols: int, path: str) -> int:
    if ncols < 2:
        raise DataError(f"{path}: need at least one feature column and a label column, got {ncols} column(s)")
    return _column_index(label_column, header, ncols, path)


def _csv_with_word_labels(body, header, label_column, path: str, err: ValueError, first: int = 1):
    """A CSV whose label column holds words (iris' ``setosa``; the class names ``_labels`` numbers
    in sorted order), every other column numbers; else the numeric read's error, naming the
    first word found in a feature column."""
    try:
        t = _loadtxt(body, dtype=str)
    except ValueError:  # rows of different lengths
        raise DataError(f"{path}: not a numeric CSV ({err})") from None
    _check_header(header, t.shape[1], first, path, label_column)
    j = _label_index(label_column, header, t.shape[1], path)
    cells = np.char.strip(t)
    for (r, c), cell in np.ndenumerate(np.delete(cells, j, axis=1)):
        if not _is_number(cell):
            col = c + (c >= j)  # (the column in the file, counted from 1 below)
            raise DataError(
                f"{path}: not a numeric CSV (feature column {col + 1}, data row {r + 1}: {str(cell)!r}; "
                f"only the label column may hold words)"
            )
    name = header[j] if header and len(header) == t.shape[1] else f"column {j + 1}"
    x, notes = _exact_integer_features(np.delete(cells, j, axis=1).astype(np.float64), j, lambda c: cells[:, c])
    return x, cells[:, j], name, notes


def _whole_numbers(text: np.ndarray) -> list[int] | None:
    """A column's cells as Python ints when every one is written as an integer, else None (1e20,
    2.5e16: written as floating-point numbers, read as such)."""
    try:
        return [int(t.strip()) for t in text]
    except ValueError:
        return None


def _exact_integer_features(x: np.ndarray, j: int, text) -> tuple[np.ndarray, list[str]]:
    """``x`` (the features, the label column ``j`` removed) with each column written as integers
    past 2**53 (IDs, nanosecond times) read again from its ``text(column)``, less its minimum, in
    Python ints (then rounded once): through float64, 2**63 + 0..39 were one value, standardized
    all zeros. Less the minimum changes no standardized value (the mean moves with it)."""
    notes = []
    for c in range(x.shape[1]):
        if not (np.all(np.isfinite(x[:, c])) and np.abs(x[:, c]).max() >= 2.0**53):
            continue
        values = _whole_numbers(text(c + (c >= j)))
        if values is None or max(values) - min(values) >= 2**1023:  # (float() of it would overflow)
            continue
        lo = min(values)
        x[:, c] = [float(v - lo) for v in values]
        notes.append(f"CSV column {c + (c >= j) + 1} (integers past 2**53) read exactly, less its minimum {lo}")
    return x, notes


def _integer_labels(text, labels: np.ndarray, path: str) -> np.ndarray:
    """The label column as integers where float64 cannot hold them: past 2**53 it merged
    labels one apart (IDs, hashes) into one class, silently; read again, from its ``text()``."""
    if not (np.all(np.isfinite(labels)) and np.abs(labels).max() >= 2.0**53):
        return labels
    values = _whole_numbers(text())
    if values is None:
        return labels
    lo, hi = min(values), max(values)
    if -(2**63) <= lo and hi < 2**63:
        return np.array(values, dtype=np.int64)
    if 0 <= lo and hi < 2**64:
        return np.array(values, dtype=np.uint64)
    raise DataError(f"{path}: labels must be integers in [-2**63, 2**63) or [0, 2**64), got {max(values, key=abs)}")


def _column_index(label_column, header, ncols: int, path: str) -> int:
    if label_column is None:
        return ncols - 1
    text = str(label_column).strip()
    try:
        j = whole(text)  # (not int(): "1_0" was column 10; a name here, as any non-number is)
    except ValueError:
        if not header or text not in header:
            names = f"the header has {', '.join(header)}" if header else "the file has no header line"
            raise DataError(f"{path}: label column {text!r} not found ({names})") from None
        # (a header names every column: _check_header) A name's position means nothing when two
        # columns share the name.
        if header.count(text) > 1:
            raise DataError(
                f"{path}: label column {text!r} is ambiguous: {header.count(text)} columns have that name"
            ) from None
        return header.index(text)
    if not -ncols <= j < ncols:
        raise DataError(
            f"{path}: label column {j} is out of range for {ncols} columns (0..{ncols - 1}, or -{ncols}..-1 "
            "counting from the end)"
        )
    return j % ncols
