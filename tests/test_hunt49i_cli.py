"""``optkern study`` / ``optkern bench`` from the command line (hunt 49i): bad option values are
refused in one line naming the option, exit status 2, before any work."""

from __future__ import annotations

import pytest

from optkern import cli


@pytest.mark.parametrize("value", ["", "  "])
def test_bench_json_without_a_file_name_is_refused(value, capsys):
    # (--json "$FILE" with FILE unset: the suite ran for minutes, wrote no file, and exited 0)
    assert cli.main(["bench", "rules", "--quick", "--json", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["optkern bench: error: --json: no file given (leave --json out for no JSON file)"]
