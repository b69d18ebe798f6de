"""Every command and sub-command: a misspelled option is named in one line with the option meant, exit status 2
and no usage dump; a prefix of an option is not taken for it (issue 23.3)."""

from __future__ import annotations

import pytest

from cytoedge.benchmarks.cli import main as bench_main
from cytoedge.convert.cli import main as convert_main
from cytoedge.edge_app.cli import main as app_main
from cytoedge.train.cli import main as train_main

# (command's main, its words before the options, an option it has)
COMMANDS = {
    "edge-train": (train_main, [], "--epochs"),
    "edge-train tune": (train_main, ["tune"], "--trials"),
    "edge-train synth": (train_main, ["synth"], "--frames"),
    "edge-convert": (convert_main, [], "--calib-images"),
    "edge-convert sign": (convert_main, ["sign"], "--key"),
    "edge-convert keygen": (convert_main, ["keygen"], "--out"),
    "edge-app": (app_main, [], "--model"),
    "edge-app report": (app_main, ["report"], "--slide"),
    "edge-app serve": (app_main, ["serve"], "--port"),
    "edge-app export-reviews": (app_main, ["export-reviews"], "--store"),
    "edge-app classify": (app_main, ["classify"], "--model"),
    "edge-app store check": (app_main, ["store", "check"], "--store"),
    "edge-app store recover": (app_main, ["store", "recover"], "--store"),
    "edge-app boards": (app_main, ["boards"], "--help"),
    "bench-device": (bench_main, [], "--formats"),
    "bench-device report": (bench_main, ["report"], "--output"),
}


def _misspelt(option: str) -> str:
    """Two letters swapped: --model -> --modle."""
    return option[:-2] + option[-1] + option[-2]


def _fails(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and not out
    assert err.count("\n") == 1 and "usage:" not in err, err  # one line, no usage dump
    return err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_misspelled_option_is_named_with_the_one_meant(command, capsys):
    main, words, option = COMMANDS[command]
    wrong = _misspelt(option)
    err = _fails(main, words + [wrong, "x"], capsys)
    assert err == f"{command}: error: unknown option {wrong} (did you mean {option}?)\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_prefix_of_an_option_is_not_that_option(command, capsys):
    main, words, option = COMMANDS[command]
    prefix = option[:-1]
    err = _fails(main, words + [prefix, "x"], capsys)
    assert f"unknown option {prefix} (did you mean {option}?)" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_option_no_command_has_says_where_to_look(command, capsys):
    main, words, _ = COMMANDS[command]
    err = _fails(main, words + ["--zzzzzz"], capsys)
    assert err == f"{command}: error: unknown option --zzzzzz; see {command} --help for the options\n"


def test_a_sub_command_option_after_its_name_and_negative_numbers_are_not_unknown(tmp_path, capsys):
    # 'store check' has --out; the main parser 'edge-app store' does not, and must let it through
    app_main(["store", "check", "--out", str(tmp_path / "none")])
    assert "error: no store at" in capsys.readouterr().err
    from cytoedge.train.cli import get_parser

    assert get_parser().parse_args(["--fold", "-1"]).fold == -1
