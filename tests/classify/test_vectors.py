"""Pretrained word vectors: reading GloVe / word2vec text, .npy and
.safetensors files (and their errors, naming the file and the line),
matching their words to a vocabulary, the classifier's embedding set from
them, and a frozen embedding that no training step changes."""
import numpy as np
import pytest
from safetensors.numpy import save_file

import rnncore
from rnncore import optim
from rnncore.classify import SequenceClassifier, build_vocab
from rnncore.classify.vectors import lookup_set, match, read_vectors, read_word_list, word_parts

GLOVE = "the 0.1 0.2 0.3\nfilm -1 0.5 2\ngood 1e-1 -2.5 0\ndoes 1 1 1\nn't 3 3 3\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_glove_text_file(tmp_path):
    words, vectors = read_vectors(write(tmp_path / "v.txt", GLOVE))
    assert words == ["the", "film", "good", "does", "n't"]
    assert vectors.dtype == np.float32 and vectors.shape == (5, 3)
    np.testing.assert_array_equal(vectors[2], np.float32([0.1, -2.5, 0.0]))


def test_word2vec_header_wanted_words_and_duplicates(tmp_path):
    path = write(tmp_path / "w2v.txt", "3 2\nFilm 1 2\nbad 3 4\nFilm 5 6\n")
    words, vectors = read_vectors(path)
    assert words == ["Film", "bad"]  # the first vector of a word seen twice
    np.testing.assert_array_equal(vectors, [[1, 2], [3, 4]])
    words, vectors = read_vectors(path, wanted={"film"})  # its lower-cased form is wanted
    assert words == ["Film"] and vectors.shape == (1, 2)
    words, vectors = read_vectors(path, wanted={"nothing"})
    assert words == [] and vectors.shape == (0, 2)


@pytest.mark.parametrize("text, message", [
    ("", "v.txt: no vectors (the file is empty)"),
    ("a 1 2 3\nb 1 2\n", "v.txt, line 2: 2 values, expected 3 (the dimension of the first line)"),
    ("2 3\na 1 2 3\nb 1 2\n", "v.txt, line 3: 2 values, expected 3 (the dimension of the header)"),
    ("3 2\na 1 2\nb 1 2\n", "the header says 3 words, the file has 2"),
    ("a 1 x 3\n", "v.txt, line 1: not a number: 'x'"),
    ("a 1 2\nb nan 2\n", "v.txt, line 2 (word 'b'): a value is NaN or infinite"),
    ("a 1 2\nb 1 inf\n", "line 2 (word 'b'): a value is NaN or infinite"),
    ("a 1 2\n\nb 1 2\n", "v.txt, line 2: empty line"),
    ("lonely\n", "v.txt, line 1: a word without a vector"),
    ("a 1 2\n 1 2\n", "v.txt, line 2: no word"),
])
def test_bad_text_files_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(ValueError, match="^" + str(tmp_path).replace("\\", "\\\\") + ".*"
                       + message.replace("(", r"\(").replace(")", r"\)")):
        read_vectors(write(tmp_path / "v.txt", text))


def test_unreadable_text_files(tmp_path):
    (tmp_path / "v.txt").write_bytes(b"a 1 2\n\xff\xfe 1 2\n")
    with pytest.raises(ValueError, match="v.txt, line 2: not UTF-8"):
        read_vectors(tmp_path / "v.txt")
    with pytest.raises(ValueError, match="no such vectors file"):
        read_vectors(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="vocabulary file is only for .npy"):
        read_vectors(write(tmp_path / "ok.txt", "a 1 2\n"), tmp_path / "vocab.txt")


def test_npy_and_safetensors_with_a_vocabulary_file(tmp_path):
    vectors = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "v.npy", vectors)
    save_file({"vectors": vectors.astype(np.float32)}, tmp_path / "v.safetensors")
    vocab = write(tmp_path / "vocab.txt", "the\nfilm\nGood\nfilm\n")
    for name in ("v.npy", "v.safetensors"):
        words, got = read_vectors(tmp_path / name, vocab)
        assert words == ["the", "film", "Good"] and got.dtype == np.float32
        np.testing.assert_array_equal(got, vectors[:3])
        words, got = read_vectors(tmp_path / name, vocab, wanted={"good"})
        assert words == ["Good"]
        np.testing.assert_array_equal(got, vectors[2:3])


def test_bad_array_files(tmp_path):
    vocab = write(tmp_path / "vocab.txt", "a\nb\n")
    np.save(tmp_path / "v.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="vocab.txt has 2 words but .*v.npy has 3 rows"):
        read_vectors(tmp_path / "v.npy", vocab)
    with pytest.raises(ValueError, match="v.npy: a .npy or .safetensors vectors file needs a "
                                         "vocabulary file"):
        read_vectors(tmp_path / "v.npy")
    np.save(tmp_path / "v.npy", np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="expected a 2-D float array"):
        read_vectors(tmp_path / "v.npy", vocab)
    np.save(tmp_path / "v.npy", np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="expected a 2-D float array"):
        read_vectors(tmp_path / "v.npy", vocab)
    np.save(tmp_path / "v.npy", np.array([[0, 1], [np.nan, 0]], np.float32))
    with pytest.raises(ValueError, match=r"v.npy, row 2 \(word 'b'\): a value is NaN"):
        read_vectors(tmp_path / "v.npy", vocab)
    for content in (b"not an array", b""):
        (tmp_path / "v.npy").write_bytes(content)
        with pytest.raises(ValueError, match="v.npy: not a NumPy array file"):
            read_vectors(tmp_path / "v.npy", vocab)
    np.save(tmp_path / "v.npy", np.zeros((2, 2), np.float32))
    with open(tmp_path / "v.npy", "r+b") as f:
        f.truncate(140)  # the header and part of the data
    with pytest.raises(ValueError, match="v.npy: not a NumPy array file"):
        read_vectors(tmp_path / "v.npy", vocab)
    save_file({"a": np.zeros((2, 2), np.float32), "b": np.zeros((2, 2), np.float32)},
              tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="two.safetensors: expected one tensor"):
        read_vectors(tmp_path / "two.safetensors", vocab)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="bad.safetensors: not a safetensors file"):
        read_vectors(tmp_path / "bad.safetensors", vocab)
    for text, message in (("a\n\nb\n", "vocab.txt, line 2: empty line"),
                          ("a\nb c\n", "vocab.txt, line 2: a word must not contain spaces"),
                          ("", "vocab.txt: no words")):
        with pytest.raises(ValueError, match=message):
            read_word_list(write(tmp_path / "vocab.txt", text))


def test_word_parts_follow_the_penn_treebank_split():
    assert word_parts("doesn't") == ["does", "n't"]
    assert word_parts("it's") == ["it", "'s"]
    assert word_parts("you're") == ["you", "'re"]
    assert word_parts("o'neil") == ["o", "'neil"]
    assert word_parts("film") == [] and word_parts("'tis") == [] and word_parts("rock'") == []
    assert lookup_set(["Doesn't"]) >= {"Doesn't", "doesn't", "Does", "n't"}


def test_match_takes_the_word_its_lower_case_or_the_mean_of_its_parts():
    words = ["Film", "film", "good", "does", "n't"]
    vectors = np.float32([[9, 9], [1, 2], [3, 4], [0, 2], [2, 0]])
    rows, found = match(["film", "GOOD", "doesn't", "bad", "isn't"], words, vectors)
    np.testing.assert_array_equal(found, [True, True, True, False, False])
    np.testing.assert_array_equal(rows, [[1, 2], [3, 4], [1, 1], [0, 0], [0, 0]])


TEXTS = ["a good film", "a bad film", "it doesn't work", "dull"]


def test_init_embedding_sets_covered_rows_and_scales_the_others(tmp_path):
    vocab = build_vocab(TEXTS)
    clf = SequenceClassifier(vocab, ["neg", "pos"], "gru", 3, 4, seed=0)
    before = clf.params["embedding.weight"].copy()
    words, vectors = read_vectors(write(tmp_path / "v.txt", GLOVE))
    assert clf.init_embedding(words, vectors) == 3  # good, film, doesn't
    emb = clf.params["embedding.weight"]
    doesnt = (vectors[3] + vectors[4]) / 2  # the mean of does and n't
    for w, v in (("good", vectors[2]), ("film", vectors[1]), ("doesn't", doesnt)):
        np.testing.assert_allclose(emb[vocab.index[w]], v, rtol=1e-6)
    covered = np.stack([vectors[2], vectors[1], doesnt])
    scale = np.sqrt(3.0) * covered.std() / 0.1
    for w in ("<unk>", "a", "bad", "dull"):  # <unk> is never taken from the file
        np.testing.assert_allclose(emb[vocab.index[w]], before[vocab.index[w]] * scale, rtol=1e-5)
    with pytest.raises(ValueError, match="dimension 4, more than the model's embedding"):
        clf.init_embedding(["a"], np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="must be finite"):
        clf.init_embedding(["a"], np.full((1, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="2 words but 1 vectors"):
        clf.init_embedding(["a", "b"], np.zeros((1, 3), np.float32))


def test_build_vocab_keeps_rare_words_that_have_vectors():
    vocab = build_vocab(TEXTS + ["a film"], min_count=2, keep={"dull", "nowhere"})
    assert vocab.tokens == ["<unk>", "a", "film", "dull"]


def test_a_frozen_embedding_never_changes_and_the_rest_trains():
    vocab = build_vocab(TEXTS)
    clf = SequenceClassifier(vocab, ["neg", "pos"], "lstm", 3, 4, bidirectional=True,
                             pooling="max", dropout=0.2, freeze_embedding=True, seed=1)
    assert "freeze_embedding=True" in repr(clf) and clf.config()["freeze_embedding"]
    trainable = clf.trainable()
    names = [n for n, _ in trainable.named_parameters()]
    assert "embedding.weight" not in names and "fc.weight" in names and "rnn.weight_ih_l0" in names
    emb, fc, w_ih = (clf.state_dict()[k].copy()
                     for k in ("embedding.weight", "fc.weight", "rnn.weight_ih_l0"))
    opt = optim.AdamW(trainable, lr=0.05, weight_decay=0.5)  # decay would move every weight
    ids = np.array([[1, 2], [3, 0]])
    for _ in range(3):
        clf.train_step(ids, [2, 1], np.array([0, 1]))
        assert not clf.grads["embedding.weight"].any()
        optim.clip_grad_norm(clf, 1.0)
        opt.step()
        clf.zero_grad()
    np.testing.assert_array_equal(clf.params["embedding.weight"], emb)
    assert not np.array_equal(clf.params["fc.weight"], fc)
    assert not np.array_equal(clf.state_dict()["rnn.weight_ih_l0"], w_ih)
    unfrozen = SequenceClassifier(vocab, ["neg", "pos"], "gru", 3, 4, seed=1)
    assert unfrozen.trainable() is unfrozen
    with pytest.raises(ValueError, match="strict=False"):
        trainable.load_state_dict({}, strict=True)


def test_frozen_flag_round_trips_and_old_files_load_unfrozen(tmp_path):
    import json
    from safetensors import safe_open
    clf = SequenceClassifier(build_vocab(TEXTS), ["neg", "pos"], "gru", 3, 4,
                             freeze_embedding=True, seed=0)
    path = rnncore.save(clf, tmp_path / "c.safetensors")
    assert rnncore.load(path).freeze_embedding
    with safe_open(path, framework="numpy") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    del cfg["freeze_embedding"]  # a file written before the option
    save_file(tensors, tmp_path / "old.safetensors", metadata=dict(meta, config=json.dumps(cfg)))
    assert not rnncore.load(tmp_path / "old.safetensors").freeze_embedding


def test_the_first_words_of_a_file_are_kept_whatever_is_wanted(tmp_path):
    text = write(tmp_path / "v.txt", "the 1 1\nthe 2 2\nof 3 3\nand 4 4\nfilm 5 5\n")
    words, vectors = read_vectors(text, wanted={"film"}, first=2)
    assert words == ["the", "of", "film"]  # the first 2 distinct words, then those wanted
    np.testing.assert_array_equal(vectors[:, 0], [1, 3, 5])
    np.save(tmp_path / "v.npy", np.arange(5, dtype=np.float32)[:, None].repeat(2, axis=1))
    vocab = write(tmp_path / "vocab.txt", "the\nthe\nof\nand\nfilm\n")
    words, vectors = read_vectors(tmp_path / "v.npy", vocab, wanted={"film"}, first=2)
    assert words == ["the", "of", "film"]
    np.testing.assert_array_equal(vectors[:, 0], [0, 2, 4])
    assert read_vectors(text, wanted=set(), first=10)[0] == ["the", "of", "and", "film"]


def test_vectors_narrower_than_the_embedding_fill_its_first_columns():
    vocab = build_vocab(TEXTS)
    clf = SequenceClassifier(vocab, ["neg", "pos"], "gru", 5, 4, seed=0)
    before = clf.params["embedding.weight"].copy()
    vectors = np.float32([[1, 2, 3], [-1, 0, 4]])
    assert clf.init_embedding(["good", "film"], vectors) == 2
    emb, scale = clf.params["embedding.weight"], np.sqrt(3.0) * vectors.std() / 0.1
    np.testing.assert_array_equal(emb[vocab.index["good"], :3], vectors[0])
    np.testing.assert_array_equal(emb[vocab.index["film"], :3], vectors[1])
    for w in ("good", "film"):  # the columns past the vectors' stay random, rescaled
        np.testing.assert_allclose(emb[vocab.index[w], 3:], before[vocab.index[w], 3:] * scale,
                                   rtol=1e-5)
    np.testing.assert_allclose(emb[vocab.index["bad"]], before[vocab.index["bad"]] * scale,
                               rtol=1e-5)
