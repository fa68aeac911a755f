"""load_file's CSV (hunt 48a): a line is cut into fields one way, the body's (np.loadtxt's).

The header rule (``_csv._fields``: the names, and which fields are words) cut a line with csv's
``skipinitialspace``, so a double quote after ``, `` opened a quoted field there; np.loadtxt,
which reads every data row, and the row-length check that guards it (``_check_row_lengths``)
take such a quote as a character of the field (as pandas and RFC 4180 do). The same line was two
lines: ``x, "height, cm", label`` was a header of 3 names above rows whose reader cut that line in
4, and a first line of names and numbers ``0, "p, q", 1`` was cut in 3 by the header rule (which
took it for a header) and in 4 by the row check (which named it as a ragged data row).
"""

from __future__ import annotations

import numpy as np
import pytest

from optkern.datasets import DataError, _csv, load_file

LINES = ["a, b", 'x, "height, cm", label', '"a", "b, c"', ' "a,b",c', '1, "2,3", 4', '"a,b",c', "a,b , c"]


@pytest.mark.parametrize("line", LINES)
def test_the_header_rule_the_row_check_and_the_body_cut_a_line_alike(line):
    names = _csv._fields(line, "f: line 1")
    fields = _csv._row(line, "f: line 1")
    body = np.loadtxt([line], delimiter=",", ndmin=2, quotechar='"', dtype=str)
    assert len(names) == len(fields) == body.shape[1], (names, fields, body)


def _write(tmp_path, lines):
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_header_cut_otherwise_than_its_rows_is_not_taken_as_three_names(tmp_path):
    rows = [f"{i},{(3 * i) % 7},{i % 2}" for i in range(20)]
    # (read as 3 names, silently: as a row, the same line has 4 fields)
    with pytest.raises(DataError, match=r"has 4 names for 3 columns.*double quote after a space"):
        load_file(_write(tmp_path, ['x, "height, cm", label', *rows]))
    d = load_file(_write(tmp_path, ['x,"height, cm",label', *rows]))  # (quoted as CSV quotes: 3 names)
    assert len(d.y) == 20 and any("'label'" in n for n in d.notes)


# The part of a line that is data (a '#' comment cut off, a blank line skipped) was cut by the
# Python side with ``line.split("#")`` and ``strip()``, and by np.loadtxt its own way: loadtxt
# keeps a '#' inside a quoted field and reads a line of spaces (or an indented comment) as a row
# of one empty field. A line of spaces at the end of a file refused the whole file with numpy's
# "the number of columns changed from 3 to 1 at row 21; use `usecols`", and a quoted ``"weight#kg"``
# was cut short in the header.
_ROWS = [f"{i},{(3 * i) % 7},{i % 2}" for i in range(20)]


@pytest.mark.parametrize(
    "lines",
    [
        [*_ROWS, "   "],
        [*_ROWS[:10], " \t ", *_ROWS[10:]],
        [*_ROWS[:10], "  # measured twice", *_ROWS[10:]],
        ["# made by hand", "   ", "f1,f2,label", *_ROWS[:5], "  # pause", *_ROWS[5:]],
    ],
)
def test_lines_of_spaces_and_indented_comments_are_skipped_as_blank_lines_are(tmp_path, lines):
    d = load_file(_write(tmp_path, lines))
    want = load_file(_write(tmp_path, _ROWS))
    assert np.array_equal(d.x, want.x) and np.array_equal(d.y, want.y)


def test_a_blank_line_among_word_labels_is_read_without_numpy_s_max_rows_warning(tmp_path):
    # (pytest turns warnings into errors: loadtxt's string read warned that a blank line "will not
    # be counted towards max_rows=50000", an argument no one gave)
    words = [f"{i},{(3 * i) % 7},{'ab'[i % 2]}" for i in range(20)]
    d = load_file(_write(tmp_path, [*words[:10], "", "  # c", *words[10:]]))
    assert len(d.y) == 20 and d.num_classes == 2


def test_a_hash_inside_a_quoted_field_is_text_as_the_body_reads_it(tmp_path):
    d = load_file(_write(tmp_path, ['x,"weight#kg",label', *_ROWS]), label_column="label")
    assert len(d.y) == 20 and any("'label'" in n for n in d.notes)
    d = load_file(_write(tmp_path, ['x,"weight#kg",label  # the scale in kg', *_ROWS]))
    assert len(d.y) == 20
    words = [f"{i},{i % 7},{'ab'[i % 2]}" for i in range(20)]
    # (cut at its '#', the first line was "a row of 1 field")
    with pytest.raises(DataError, match=r"line 1 holds both names \(#1, a\) and numbers \(2\)"):
        load_file(_write(tmp_path, ['"#1",2,a', *words]))


def test_the_data_part_of_a_line_is_cut_as_loadtxt_cuts_it():
    for line, data in [
        ('1,"2#3",4 # c', '1,"2#3",4 '),
        ('1, "2#3",4', '1, "2'),  # (a quote after a space quotes nothing: _row)
        ('"a""#b",1#c', '"a""#b",1'),
        ("  # c", ""),
        (" \t", ""),
        ("#", ""),
    ]:
        assert _csv._data(line) == data, line
        if data:  # (loadtxt's own comment rule: the same fields)
            want = np.loadtxt([line], delimiter=",", quotechar='"', dtype=str, ndmin=2, comments="#")
            got = np.loadtxt([data], delimiter=",", quotechar='"', dtype=str, ndmin=2, comments=None)
            assert np.array_equal(got, want), (line, got, want)


# np.loadtxt reads a quoted field on over a line's end: a double quote that opened a field and never
# closed (a file cut short, a label typed ``"b``) took every line after it, up to the next quote,
# into one cell, silently: 200 rows with ``150,1,"b`` were read as 151 samples, the last labelled
# "b\n151,5,b\n152,1,a\n...". The Python side reads line by line: the line is now refused, named.
@pytest.mark.parametrize(
    "bad",
    ['150,1,"b', '150,1,"b""', '150,"1,b', '150,a"b,"c', '150,1,"b # c'],
)
def test_a_quote_that_does_not_close_on_its_line_is_refused_naming_the_line(tmp_path, bad):
    words = [f"{i},{(3 * i) % 7},{'ab'[i % 2]}" for i in range(200)]
    words[150] = bad
    with pytest.raises(DataError, match=r"line 151: a double quote opens a field that does not close on its line"):
        load_file(_write(tmp_path, words))


def test_quotes_that_close_are_read_as_before(tmp_path):
    rows = [f'{i},{(3 * i) % 7},"{"ab"[i % 2]}"' for i in range(20)]  # (R's write.csv)
    rows[3] = '3,2,"a"""'  # (the label a", its quote doubled)
    rows[4] = '4,1,"b"x'  # (bx: after the closing quote, the field goes on)
    rows[5] = '5,6,a"b'  # (a quote inside a field is a character)
    d = load_file(_write(tmp_path, ['"f1","f2","label"', *rows]))
    assert len(d.y) == 20 and d.num_classes == 5


@pytest.mark.parametrize("tail", ["20,3,1\x00\x00\x00", "20,3\x00\x00,1", "\x00" * 64])
def test_a_line_with_a_nul_is_refused_naming_the_line(tmp_path, tail):
    # (NULs at a cell's end were dropped, after they had made the labels class names, sorted as text)
    rows = [f"{i},{(3 * i) % 7},{i % 2}" for i in range(20)]
    with pytest.raises(DataError, match=r"line 21: a NUL character"):
        load_file(_write(tmp_path, [*rows, tail]))
