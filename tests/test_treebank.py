import gzip

import pytest

from sasutils.treebank import ReadStats, TreebankError, load_treebank, read_conllu


def test_ewt_counts_match_manifest():
    stats = ReadStats()
    dev = load_treebank("ewt-dev", stats=stats)
    assert len(dev) == 2001 and stats.words == 25147  # MANIFEST.md: 2,001 sentences / 25,147 tokens
    assert stats.multiword_ranges > 0 and stats.empty_nodes > 0  # counted, not dropped silently
    s = dev[0]
    assert len(s.words) == len(s.heads) == len(s.deprels)
    assert sum(h == -1 for h in s.heads) == 1


def test_train_gz_and_gum_and_wsj():
    assert len(load_treebank("ewt-train")) == 12544
    assert len(load_treebank("gum-test")) == 1464
    wsj = load_treebank("wsj")
    assert len(wsj) == 3914 and sum(len(s) for s in wsj) == 94084
    assert wsj[0].words[:2] == ("Pierre", "Vinken")
    assert set(wsj[0].deprels) == {"_"}


def test_unknown_name_and_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="unknown treebank"):
        load_treebank("nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_treebank("ewt-dev", data_dir=tmp_path / "missing")


LINE = "{i}\tw{i}\tw\tNOUN\t_\t_\t{h}\tdep\t_\t_"


@pytest.mark.parametrize(
    "body, message",
    [
        ([LINE.format(i=1, h=0), LINE.format(i=2, h=7)], ":1: word 2 has head 7"),
        ([LINE.format(i=1, h=2), LINE.format(i=2, h=1)], "0 roots"),
        ([LINE.format(i=1, h=0), "2\tw2\tw"], ":3: expected 10 tab-separated columns, found 3"),
        ([LINE.format(i=1, h=0), LINE.format(i=2, h=3), LINE.format(i=3, h=2)], "cycle"),
    ],
)
def test_malformed_conllu_names_file_and_line(tmp_path, body, message):
    f = tmp_path / "bad.conllu"
    f.write_text("# sent_id = x\n" + "\n".join(body) + "\n\n")
    with pytest.raises(TreebankError, match=message.replace("(", r"\(")) as e:
        read_conllu(f)
    assert str(f) in str(e.value)


def test_multiword_and_empty_nodes_are_counted(tmp_path):
    f = tmp_path / "mw.conllu"
    f.write_text("1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n" + LINE.format(i=1, h=0) + "\n" + LINE.format(i=2, h=1)
                 + "\n2.1\te\t_\t_\t_\t_\t_\t_\t_\t_\n\n")
    stats = ReadStats()
    (s,) = read_conllu(f, stats)
    assert s.heads == (-1, 0) and stats.multiword_ranges == 1 and stats.empty_nodes == 1


def test_non_utf8(tmp_path):
    f = tmp_path / "latin1.conllu.gz"
    with gzip.open(f, "wb") as fh:
        fh.write(("1\tcaf\xe9\t_\tNOUN\t_\t_\t0\troot\t_\t_\n\n").encode("latin-1"))
    with pytest.raises(TreebankError, match="not UTF-8"):
        read_conllu(f)
