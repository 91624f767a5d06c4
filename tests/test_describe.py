from __future__ import annotations

from movielens_gnn.cli import main


def test_report_counts_and_split(ml100k_root, capsys):
    text = main(["describe", "--data.root", str(ml100k_root)])
    assert capsys.readouterr().out == text
    assert "users: 24\nitems: 30\nratings: 288\n" in text
    assert f"density: {288 / (24 * 30):.4%}" in text
    assert "u.item release_date empty: 1" in text  # the synthetic last movie has no date
    lines = [line for line in text.splitlines() if line[:2] in {"1:", "2:", "3:", "4:", "5:"}]
    assert len(lines) == 5 and sum(int(line.split()[1]) for line in lines) == 288
    assert "## Split u1" in text and "directed edges" in text


def test_plots_are_written(ml100k_root, tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,step,train_rmse,val_rmse\n0,0,,1.2\n0,0,1.3,\n1,1,,1.1\n1,1,1.0,\n")
    text = main(["describe", "--data.root", str(ml100k_root), "--plots", str(tmp_path / "plots"), "--logs", str(metrics)])
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["item_degree.png", "rating_histogram.png", "rmse_curves.png", "user_degree.png"]
    for name in names:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in text
