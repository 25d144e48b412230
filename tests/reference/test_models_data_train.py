"""Reference models (attnfaith.reference.models), data readers and vocabulary (attnfaith.reference.data,
attnfaith.reference.vocabulary) and training loops (attnfaith.reference.training)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from attnfaith.nn import AttentionSoftmax
from attnfaith.reference.data import (
    TextDataset,
    data_dir,
    encode_for_hf,
    read_table,
    sst_min_length_filter,
)
from attnfaith.reference.models import AverageAttentionClassifier, BiLSTMAttentionClassifier
from attnfaith.reference.training import (
    classification_metrics,
    evaluate_classifier,
    fine_tune_hf,
    train_classifier,
)
from attnfaith.reference.vocabulary import Vocabulary

MODELS = [BiLSTMAttentionClassifier, AverageAttentionClassifier]
FILLER = [f"w{i}" for i in range(30)]


def planted(n: int, seed: int, marker: str = "good"):
    """Label 1 iff ``marker`` occurs among random filler tokens (4..12 tokens)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        toks = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
        y = int(rng.random() < 0.5)
        if y:
            toks[rng.randrange(len(toks))] = marker
        texts.append(" ".join(toks))
        labels.append(y)
    return texts, labels


@pytest.fixture(scope="module")
def task():
    tr_t, tr_y = planted(400, seed=1)
    dv_t, dv_y = planted(200, seed=2)
    vocab = Vocabulary.build(tr_t)
    train = vocab.encode_dataset(TextDataset(tr_t, tr_y))
    dev = vocab.encode_dataset(TextDataset(dv_t, dv_y))
    return vocab, train, dev


def small(cls, vocab, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(len(vocab), embed_dim=16, hidden_dim=16, **kw)


TEXTS = ["w1 w2 w3", "w4 w5 w6 w7 w8 w9 w10", "w3", "w2 w2 w9 w11 w12"]


# --------------------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("cls", MODELS)
def test_padding_does_not_change_logits(cls):
    vocab = Vocabulary.build(TEXTS)
    model = small(cls, vocab).eval()
    enc = vocab.encode(TEXTS)
    with torch.no_grad():
        batch = model(enc["input_ids"], enc["attention_mask"])
        assert batch.shape == (len(TEXTS), 2)
        for i, t in enumerate(TEXTS):
            one = vocab.encode([t])
            alone = model(one["input_ids"], one["attention_mask"])
            torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=1e-5)
        # extra padding columns, and the default mask (ids != pad), change nothing
        ids = torch.cat([enc["input_ids"], torch.zeros(len(TEXTS), 3, dtype=torch.long)], dim=1)
        mask = torch.cat([enc["attention_mask"], torch.zeros(len(TEXTS), 3, dtype=torch.long)], dim=1)
        torch.testing.assert_close(model(ids, mask), batch, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(ids), batch, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_attention_covers_real_tokens_only(cls):
    vocab = Vocabulary.build(TEXTS)
    model = small(cls, vocab).eval()
    enc = vocab.encode(TEXTS + ["never seen words"])  # <unk> is a real word and is attended
    with torch.no_grad():
        a = model.attention(enc["input_ids"], enc["attention_mask"])
    ids = enc["input_ids"]
    special = torch.isin(ids, torch.tensor(vocab.special_token_ids))
    assert torch.all(a[special] == 0)
    torch.testing.assert_close(a.sum(1), torch.ones(len(ids)), atol=1e-6, rtol=0)
    assert torch.all(a[~special] > 0)
    assert model.get_input_embeddings() is model.embedding
    assert model.special_token_ids == (0, 2, 3) and model.pad_token_id == 0 and model.num_labels == 2


@pytest.mark.parametrize("cls", MODELS)
def test_imposed_attention_round_trips_and_drives_prediction(cls):
    vocab = Vocabulary.build(TEXTS)
    model = small(cls, vocab).eval()
    enc = vocab.encode(TEXTS)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    g = torch.Generator().manual_seed(0)
    w = torch.rand(ids.shape, generator=g)  # mass on specials/padding too: must be dropped
    w[0, 2] = 0.0  # an exact zero on a real token
    real = model.attention_mask_for(ids, mask)
    expected = w * real
    expected = expected / expected.sum(1, keepdim=True)

    seen = []
    handle = model.attention_softmax.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    with torch.no_grad():
        logits, a = model(ids, mask, attention_weights=w, return_attention=True)
    handle.remove()
    torch.testing.assert_close(a, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(seen[0], expected, atol=1e-6, rtol=0)  # it went through AttentionSoftmax
    assert a[0, 2] == 0
    with torch.no_grad():  # prediction = classifier(sum_t alpha_t h_t)
        h = model.encode(ids, mask)
        manual = model.classifier(torch.einsum("bt,bth->bh", expected, h))
    torch.testing.assert_close(logits, manual, atol=1e-5, rtol=1e-5)

    # the attention reaches the prediction only through the AttentionSoftmax output
    uni = real.float() / real.sum(1, keepdim=True)
    handle = model.attention_softmax.register_forward_hook(lambda m, i, o: uni)
    with torch.no_grad():
        swapped = model(ids, mask)
    handle.remove()
    with torch.no_grad():
        torch.testing.assert_close(swapped, model(ids, mask, attention_weights=uni), atol=1e-5, rtol=1e-5)

    with pytest.raises(ValueError, match="no mass"):
        model(ids, mask, attention_weights=torch.where(real, 0.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        model(ids, mask, attention_weights=w[:, :-1])


@pytest.mark.parametrize("cls", MODELS)
def test_uniform_attention(cls):
    vocab = Vocabulary.build(TEXTS)
    model = small(cls, vocab, uniform_attention=True).eval()
    enc = vocab.encode(TEXTS)
    with torch.no_grad():
        a = model.attention(enc["input_ids"], enc["attention_mask"])
    n_real = enc["attention_mask"].sum(1) - 2
    real = model.attention_mask_for(enc["input_ids"], enc["attention_mask"])
    torch.testing.assert_close(a, real.float() / n_real[:, None].float(), atol=1e-7, rtol=0)
    assert model.attention_softmax.uniform
    with pytest.raises(ValueError, match="uniform_attention"):
        model(enc["input_ids"], attention_weights=torch.ones(enc["input_ids"].shape))


def test_model_options_and_errors():
    vocab = Vocabulary.build(TEXTS)
    enc = vocab.encode(TEXTS)
    emb = torch.randn(len(vocab), 8)
    m = BiLSTMAttentionClassifier(len(vocab), num_labels=3, embeddings=emb, freeze_embeddings=True, attention="dot",
                                  hidden_dim=4)
    assert torch.equal(m.get_input_embeddings().weight, emb) and not m.embedding.weight.requires_grad
    assert m(enc["input_ids"], enc["attention_mask"]).shape == (len(TEXTS), 3)
    default = BiLSTMAttentionClassifier(len(vocab))
    assert default.attention_scorer.attn1.out_features == 128  # JW: attention hidden = 2*128 // 2
    assert isinstance(default.attention_softmax, AttentionSoftmax)
    left = enc["attention_mask"].flip(1)
    with pytest.raises(ValueError, match="right padding"):
        m(enc["input_ids"].flip(1), left)
    with pytest.raises(ValueError, match="attention"):
        BiLSTMAttentionClassifier(10, attention="bogus")


def test_attention_tap_sees_reference_model():
    tap_mod = pytest.importorskip("attnfaith.attention")
    vocab = Vocabulary.build(TEXTS)
    model = small(BiLSTMAttentionClassifier, vocab).eval()
    enc = vocab.encode(TEXTS)
    with torch.no_grad():
        a = model.attention(enc["input_ids"], enc["attention_mask"])
        with tap_mod.AttentionTap(model) as tap:
            model(enc["input_ids"], enc["attention_mask"])
        torch.testing.assert_close(tap.attentions[0].reshape(a.shape), a)
        real = model.attention_mask_for(enc["input_ids"], enc["attention_mask"])
        with tap_mod.AttentionTap(model) as tap:
            tap.intervene("uniform")
            swapped = model(enc["input_ids"], enc["attention_mask"])
        uni = real.float() / real.sum(1, keepdim=True)
        torch.testing.assert_close(swapped, model(enc["input_ids"], attention_weights=uni), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------- data


def test_read_csv_tsv_jsonl(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('text,label,exp_split\n"a, quoted ""comma"" text",1,train\nplain,0,dev\nmore,1,train\n')
    ds = read_table(csv_path, split_column="exp_split")
    assert ds.texts[0] == 'a, quoted "comma" text' and ds.labels == [1, 0, 1] and ds.label_names is None
    assert len(ds.filter("train")) == 2 and ds.filter("dev").texts == ["plain"]
    assert read_table(csv_path, split="dev").texts == ["plain"]  # split column found automatically
    assert ds.subset([2, 0]).texts == ["more", 'a, quoted "comma" text']

    tsv_path = tmp_path / "d.tsv"
    tsv_path.write_text('sentence\tlabel\nit \'s a "charming" film \t1\n" unbalanced quote\t0\n')
    ds = read_table(tsv_path, text_column="sentence")
    assert ds.texts == ['it \'s a "charming" film ', '" unbalanced quote'] and ds.labels == [1, 0]

    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [{"text": "x", "label": "pos"}, {"text": "y", "label": "neg"}]))
    ds = read_table(jl)
    assert ds.labels == [1, 0] and ds.label_names == ["neg", "pos"]
    ds = read_table(jl, label_names=["pos", "neg"])
    assert ds.labels == [0, 1]
    assert read_table(jl, label_column=None).labels is None

    other = tmp_path / "d.txt"
    other.write_text("text,label\nhi,1\n")
    assert read_table(other, format="csv").texts == ["hi"]


def test_read_table_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_table(tmp_path / "nope.csv")
    p = tmp_path / "d.csv"
    p.write_text("sentence,label\nhi,1\n")
    with pytest.raises(ValueError, match=r"'text'.*available columns: 'sentence', 'label'"):
        read_table(p)
    p.write_text("text,label\nhi,1\nbad,row,extra\n")
    with pytest.raises(ValueError, match=r"d\.csv:3"):
        read_table(p)
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"text": "a", "label": 1}\n{not json}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl:2"):
        read_table(jl)
    jl.write_text('{"text": "a", "label": 1}\n{"txt": "b", "label": 0}\n')
    with pytest.raises(ValueError, match=r"'text'.*'txt'"):
        read_table(jl)
    p.write_text("text,label\nhi,\n")
    with pytest.raises(ValueError, match="empty label"):
        read_table(p)
    with pytest.raises(ValueError, match="format"):
        read_table(p, format="xml")


def test_vocabulary_round_trip(tmp_path):
    texts = ["the film is good", "the film is bad bad", "The"]
    vocab = Vocabulary.build(texts)
    assert vocab.itos[:4] == ["<pad>", "<unk>", "<sos>", "<eos>"]
    assert vocab.special_token_ids == (0, 2, 3)
    assert vocab.itos[4] in ("bad", "film", "is", "the")  # most frequent first
    enc = vocab.encode(texts)
    assert enc["input_ids"].shape == (3, 7) and enc["input_ids"].dtype == torch.long
    assert enc["input_ids"][0, 0] == 2 and enc["input_ids"][0, 5] == 3 and enc["input_ids"][0, 6] == 0
    assert enc["attention_mask"].sum(1).tolist() == [6, 7, 3]
    assert vocab.decode(enc["input_ids"]) == texts
    assert vocab.tokens(enc["input_ids"][2]) == ["<sos>", "The", "<eos>", "<pad>", "<pad>", "<pad>", "<pad>"]
    assert vocab.decode(vocab.encode(["the unseen"])["input_ids"][0]) == "the <unk>"
    short = vocab.encode(texts, max_length=4)
    assert short["input_ids"].shape[1] == 4 and short["input_ids"][1, 3] == 3
    lower = Vocabulary.build(texts, lowercase=True, min_count=2)
    assert "the" in lower and "The" not in lower and "good" not in lower
    vocab.save(tmp_path / "v.json")
    again = Vocabulary.load(tmp_path / "v.json")
    assert again.itos == vocab.itos and torch.equal(again.encode(texts)["input_ids"], enc["input_ids"])
    assert len(Vocabulary.build(texts, max_size=2)) == 6


def test_sst_filter_and_data_dir(tmp_path, monkeypatch):
    ds = TextDataset(["one two three four five", "one two three four five six", "a b c d e f g"], [0, 1, 1])
    assert sst_min_length_filter(ds).texts == ds.texts[1:]
    monkeypatch.setenv("ATTNFAITH_DATA", str(tmp_path))
    assert data_dir() == tmp_path.resolve()
    monkeypatch.setenv("ATTNFAITH_DATA", str(tmp_path / "missing"))
    with pytest.warns(UserWarning):
        assert data_dir() is None


def test_sst_file_split_counts():
    monkey = data_dir()
    path = None if monkey is None else monkey / "sst" / "sst_dataset.csv"
    if path is None or not path.is_file():
        pytest.skip("shared SST data not available (set ATTNFAITH_DATA)")
    ds = read_table(path, split_column="exp_split")
    counts = {s: len(ds.filter(s)) for s in ("train", "dev", "test")}
    assert counts == {"train": 6920, "dev": 872, "test": 1821}
    assert set(ds.labels) == {0, 1}
    assert len(sst_min_length_filter(ds.filter("train"))) == 6356


# ---------------------------------------------------------------------------------------------------------- train


def test_classification_metrics():
    m = classification_metrics([0, 0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    assert m["accuracy"] == 0.75 and m["auc"] == 0.75
    assert m["f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_bilstm_learns_planted_signal(task):
    vocab, train, dev = task
    model = small(BiLSTMAttentionClassifier, vocab)
    result = train_classifier(model, train, dev, epochs=6, lr=1e-2, progress=False)
    assert not model.training
    assert result.best_epoch >= 2  # never epoch 1 (JW)
    assert result.select_by == "auc" and len(result.history) == result.epochs_run
    metrics = evaluate_classifier(model, dev["input_ids"], dev["attention_mask"], dev["labels"])
    assert metrics["accuracy"] >= 0.95, metrics
    assert metrics == evaluate_classifier(model, dev)
    with torch.no_grad():
        a = model.attention(dev["input_ids"], dev["attention_mask"])
    pos = dev["labels"] == 1
    top = dev["input_ids"][pos].gather(1, a[pos].argmax(1, keepdim=True)).squeeze(1)
    assert (top == vocab.token_to_id("good")).float().mean() >= 0.8


def test_training_is_reproducible_and_leaves_rng_alone(task):
    vocab, train, dev = task
    sub = {k: v[:128] for k, v in train.items()}

    def run(seed):
        model = small(AverageAttentionClassifier, vocab, seed=0, dropout=0.1)
        train_classifier(model, sub, dev, epochs=2, seed=seed, progress=False)
        return model.state_dict()

    torch.manual_seed(123)
    a = run(0)
    after = torch.rand(1)
    torch.manual_seed(123)
    b = run(0)
    assert torch.equal(torch.rand(1), after)  # the caller's RNG stream is untouched
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = run(1)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_train_argument_errors(task):
    vocab, train, dev = task
    model = small(AverageAttentionClassifier, vocab)
    with pytest.raises(TypeError):
        train_classifier(model, train["input_ids"], progress=False)
    with pytest.raises(ValueError, match="select_by"):
        train_classifier(model, train, dev, select_by="loss", progress=False)
    r = train_classifier(model, (train["input_ids"][:64], train["attention_mask"][:64], train["labels"][:64]),
                         epochs=1, progress=False)
    assert r.best_epoch == 1 and r.best_metric is None and not model.training


def _tiny_hf(vocab_words):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate(specials + list(vocab_words))}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=2,
    )
    return transformers.BertForSequenceClassification(config), hf_tok


def test_fine_tune_hf_and_encode_for_hf():
    tr_t, tr_y = planted(256, seed=3)
    dv_t, dv_y = planted(100, seed=4)
    model, tok = _tiny_hf(FILLER + ["good"])
    enc = encode_for_hf(tok, dv_t[:3], max_length=8)
    assert enc["input_ids"].shape[1] <= 8 and enc["special_tokens_mask"][:, 0].eq(1).all()
    result = fine_tune_hf(model, tok, tr_t, tr_y, dv_t, dv_y, epochs=4, lr=5e-3, batch_size=32, progress=False)
    assert not model.training
    assert result.epochs_run == 4 and result.best_dev["accuracy"] == result.best_metric
    assert result.best_metric >= 0.9, result.history
