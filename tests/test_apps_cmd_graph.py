"""clockless graph show/list."""

from apps.cli import main


def test_graph_show_prints_text_and_mermaid(capsys):
    assert main(["graph", "show", "passthrough"]) == 0
    out = capsys.readouterr().out
    assert "sink   count" in out and "flowchart LR" in out and "n_pass4 --> n_count" in out


def test_graph_show_unknown_is_a_one_line_error(capsys):
    assert main(["graph", "show", "no_such_graph"]) == 2
    err = capsys.readouterr().err
    assert "no graph named 'no_such_graph'" in err and "Traceback" not in err


def test_graph_list(capsys):
    assert main(["graph", "list"]) == 0
    assert "passthrough" in capsys.readouterr().out
