"""--config FILE.toml for edge-app, edge-convert and bench-device: keys from each parser, command line wins."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from cytoedge.edge_app.configfile import ConfigFileError, apply_config, option_keys, parse_args

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "hardware" / "systemd" / "edge-app.toml"


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from cytoedge.benchmarks import cli as bench
    from cytoedge.convert import cli as conv
    from cytoedge.edge_app import cli as app

    return {"edge-app": app.get_parser(), "edge-app report": app.get_report_parser(),
            "edge-app serve": app.get_serve_parser(), "edge-app export-reviews": app.get_export_reviews_parser(),
            "edge-convert": conv.get_parser(), "bench-device": bench.get_parser(),
            "bench-device report": bench.get_report_parser()}


@pytest.mark.parametrize("command", list(_parsers()))
def test_every_option_of_every_command_is_a_key(command):
    parser = _parsers()[command]
    keys = option_keys(parser)
    assert any(a.option_strings == ["--config"] for a in parser._actions)  # each command takes --config
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if action.dest in ("help", "config"):
            continue
        for o in longs:
            assert keys[o[2:].replace("-", "_")] is action
        if not action.option_strings:
            assert keys[action.dest] is action


def test_an_option_added_later_is_a_key_without_edits(tmp_path):
    from cytoedge.edge_app.cli import get_parser

    p = get_parser()
    p.add_argument("--brand-new-option", type=int, default=1)
    f = tmp_path / "c.toml"
    f.write_text('model = "m"\nbrand_new_option = 7\n')
    assert parse_args(p, ["--config", str(f)]).brand_new_option == 7


def test_the_shipped_example_is_valid_for_the_run_and_its_subcommands():
    from cytoedge.edge_app.cli import SUBCOMMANDS, get_parser, get_report_parser, get_serve_parser

    a = parse_args(get_parser(), ["--config", str(EXAMPLE)], sections=SUBCOMMANDS)
    assert (a.model, a.source, a.board, a.quiet, a.save_crops) == (Path("/home/pi/cytoedge/models/shufflenet"), "picam",
                                                                   "auto", True, "review")
    assert a.camera_timeout == 30.0 and a.out == Path("/home/pi/cytoedge-data") and not a.web
    r = parse_args(get_report_parser(), ["--config", str(EXAMPLE), "--slide", "s"], section="report")
    assert (r.refer_abnormal_fraction, r.refer_unknown_fraction, r.out) == (0.02, 0.25, Path("/home/pi/cytoedge-data"))
    s = parse_args(get_serve_parser(), ["--config", str(EXAMPLE)], section="serve")
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    # every key the example sets or shows commented out is an option of edge-app (or of its [report] / [serve])
    shown = set(re.findall(r"^#?\s*([a-z_]+) = ", EXAMPLE.read_text(), re.M))
    known = set(option_keys(get_parser())) | set(option_keys(get_report_parser())) | set(option_keys(get_serve_parser()))
    assert shown <= known, shown - known


def test_edge_app_runs_from_a_config_file_and_the_command_line_wins(device_model, field_frames, tmp_path, capsys):
    from cytoedge.edge_app.boards import detect_board
    from cytoedge.edge_app.cli import main
    from cytoedge.edge_app.store import Store

    text = EXAMPLE.read_text()
    text = text.replace("/home/pi/cytoedge/models/shufflenet", str(device_model))
    text = text.replace('source = "picam"', f'source = "{field_frames[0].parent}"')
    text = text.replace("/home/pi/cytoedge-data", str(tmp_path / "store"))
    text = text.replace('board = "auto"', 'board = "rpi5"')
    text = text.replace('refer_abnormal_fraction = "2%"', 'refer_abnormal_fraction = "3%"')
    conf = tmp_path / "edge-app.toml"
    conf.write_text("threads = 2\n" + text)
    rc = main(["--config", str(conf), "--slide", "cfg", "--threads", "1", "--max-frames", "1"])
    assert rc == 0 and "slide cfg: 1 frames" in capsys.readouterr().out
    with Store(tmp_path / "store", create=False) as s:
        run = s.conn.execute("SELECT board, threads, settings FROM runs").fetchone()
    assert (run["board"], run["threads"]) == ("rpi5", 1)  # the file's board; the command line's threads
    settings = json.loads(run["settings"])
    assert settings["save_crops"] == "review"
    check = settings["board_check"]  # the named board and the one detected, both kept with the run
    assert check["named"] == "rpi5" and check["detected"] == detect_board().name
    assert check["matches"] == (detect_board().name == "rpi5")
    assert main(["report", "--config", str(conf), "--slide", "cfg", "--report-format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["triage"]["rule"]["abnormal_fraction"] == 0.03  # from the [report] table, written as "3%"


@pytest.mark.parametrize("toml, message", [
    ("threds = 2\n", "unknown key threds (did you mean threads?)"),
    ("threads = 2.5\n", "threads = 2.5 is not a valid int"),
    ("threads = true\n", "threads = True is true/false"),
    ("quiet = 1\n", "quiet = 1 must be true or false (it is a switch)"),
    ('save_crops = "some"\n', "save_crops = 'some' is not one of none, abnormal, review, all"),
    ('camera_size = "big"\n', "camera_size = 'big' is not a valid value (write WIDTHxHEIGHT"),
    ("min_free_mb = -1\n", "min_free_mb = -1 is not a valid value (must be >= 0"),
    ("threads = [\n", "is not valid TOML"),
])
def test_bad_config_files_are_one_line_errors_with_exit_2(tmp_path, capsys, toml, message):
    from cytoedge.edge_app.cli import main

    conf = tmp_path / "c.toml"
    conf.write_text('model = "m"\n' + toml)
    assert main(["--config", str(conf)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-app: error: ") and message in err[0], err


def test_edge_convert_and_bench_device_take_positionals_and_lists_from_the_file(tmp_path, capsys):
    from cytoedge.benchmarks.cli import get_parser as bench_parser
    from cytoedge.convert.cli import get_parser as convert_parser
    from cytoedge.convert.cli import main as convert_main

    (tmp_path / "c.toml").write_text('bundle = "runs/x/fold_0"\nout = "models/x"\nint8 = true\ncalib_images = 50\n')
    a = parse_args(convert_parser(), ["--config", str(tmp_path / "c.toml")])
    assert (a.bundle, a.out, a.int8, a.calib_images) == (Path("runs/x/fold_0"), Path("models/x"), True, 50)
    a = parse_args(convert_parser(), ["--config", str(tmp_path / "c.toml"), "runs/y/fold_1", "--calib-images", "20"])
    assert (a.bundle, a.calib_images) == (Path("runs/y/fold_1"), 20)  # the command line wins, positionals too
    assert convert_main(["--config", str(tmp_path / "c.toml")]) == 2  # no such bundle: a one-line error
    assert "no checkpoint bundle at runs/x/fold_0" in capsys.readouterr().err

    (tmp_path / "b.toml").write_text('models = ["models/a", "models/b"]\nthreads = [1, 2]\nformats = "tflite-int8"\n'
                                     '[report]\noutput = "r.md"\n')
    b = parse_args(bench_parser(), ["--config", str(tmp_path / "b.toml")], sections=("report",))
    assert (b.models, b.threads, b.formats) == ([Path("models/a"), Path("models/b")], "1,2", "tflite-int8")
    b = parse_args(bench_parser(), ["--config", str(tmp_path / "b.toml"), "models/c"], sections=("report",))
    assert b.models == [Path("models/c")]


def test_apply_config_switches_and_lists():
    p = argparse.ArgumentParser()
    p.add_argument("--on", action="store_true")
    p.add_argument("--keep", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--rgb", type=float, nargs=3)
    apply_config(p, {"on": True, "no_keep": True, "sizes": [1, 2], "rgb": [0.5, 0.5, 0.5]}, "t.toml")
    a = p.parse_args([])
    assert (a.on, a.keep, a.sizes, a.rgb) == (True, False, [1, 2], [0.5, 0.5, 0.5])
    with pytest.raises(ConfigFileError, match="rgb takes a list of 3 values"):
        apply_config(p, {"rgb": [1, 2]}, "t.toml")


def test_a_repeatable_option_from_the_file_is_replaced_not_extended_by_the_command_line(tmp_path):
    p = argparse.ArgumentParser()
    _ = p.add_argument("--config")
    p.add_argument("--trust", type=Path, action="append")
    (tmp_path / "c.toml").write_text('trust = ["a.pub", "b.pub"]\n')
    assert parse_args(p, ["--config", str(tmp_path / "c.toml")]).trust == [Path("a.pub"), Path("b.pub")]
    p = argparse.ArgumentParser()
    _ = p.add_argument("--config")
    p.add_argument("--trust", type=Path, action="append")
    assert parse_args(p, ["--config", str(tmp_path / "c.toml"), "--trust", "c.pub"]).trust == [Path("c.pub")]
