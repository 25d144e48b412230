"""attnfaith.attention.model_facts on the tiny zoo: dimensions, input embedding, classification head, device, dtype.

Every expected value is written out by hand from the configs in ``attnfaith/testing.py`` (hidden 32, 4 heads,
``num_layers`` layers) and from the module names transformers gives each architecture.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnfaith.attention.model_facts import (
    HEAD_MODULE_NAMES,
    ModelDims,
    head_parameter_names,
    input_embedding_module,
    is_head_parameter,
    model_device,
    model_dims,
    model_dtype,
)
from attnfaith.reference.models import BiLSTMAttentionClassifier
from attnfaith.testing import ARCHITECTURES, tiny_model

#: the module whose output is the embedding of the (encoder) input tokens, by its name in the model
EMBEDDING_NAMES = {
    "bert": "bert.embeddings.word_embeddings",
    "distilbert": "distilbert.embeddings.word_embeddings",
    "roberta": "roberta.embeddings.word_embeddings",
    "albert": "albert.embeddings.word_embeddings",
    "electra": "electra.embeddings.word_embeddings",
    "deberta-v2": "deberta.embeddings.word_embeddings",
    "modernbert": "model.embeddings.tok_embeddings",
    "gpt2": "transformer.wte",
    "llama": "model.embed_tokens",
    "qwen2": "model.embed_tokens",
    "bart": "model.encoder.embed_tokens",
    "t5": "transformer.encoder.embed_tokens",
}

#: the parameters of each sequence-classification head
HEAD_PARAMETERS = {
    "bert": ["classifier.weight", "classifier.bias"],
    "distilbert": ["pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"],
    "roberta": ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                "classifier.out_proj.bias"],
    "albert": ["classifier.weight", "classifier.bias"],
    "electra": ["classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                "classifier.out_proj.bias"],
    "deberta-v2": ["classifier.weight", "classifier.bias"],
    "modernbert": ["classifier.weight", "classifier.bias"],
    "gpt2": ["score.weight"],
    "llama": ["score.weight"],
    "qwen2": ["score.weight"],
    "bart": ["classification_head.dense.weight", "classification_head.dense.bias",
             "classification_head.out_proj.weight", "classification_head.out_proj.bias"],
    "t5": ["classification_head.dense.weight", "classification_head.dense.bias",
           "classification_head.out_proj.weight", "classification_head.out_proj.bias"],
}


def test_tables_cover_the_zoo():
    assert set(EMBEDDING_NAMES) == set(ARCHITECTURES) == set(HEAD_PARAMETERS)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_dims_are_the_configs(arch):
    # testing.py: HIDDEN = 32, HEADS = 4 (llama/qwen2: 2 key-value heads, 4 query heads), num_layers as asked
    # (bart/t5: encoder and decoder layers alike)
    model = tiny_model(arch, num_layers=3)
    dims = model_dims(model)
    assert dims == ModelDims(hidden_size=32, num_layers=3, num_heads=4)
    assert (dims.hidden_size, dims.num_layers, dims.num_heads) == (32, 3, 4)


def test_dims_without_a_config_are_guessed_from_the_parameters():
    # no config: hidden = the largest last dimension of a 2-D parameter. BiLSTM(embed 12, 10 per direction):
    # embedding [50, 12], LSTM weight_ih [40, 12], weight_hh [40, 10], attention Linear(20, 10) [10, 20],
    # Linear(10, 1) [1, 10], classifier Linear(20, 2) [2, 20] -> 20; layers 2 and heads 1 by default
    model = BiLSTMAttentionClassifier(50, embed_dim=12, hidden_dim=10)
    assert model_dims(model) == (20, 2, 1)
    assert model_dims(nn.Module()) == (256, 2, 1)


def test_dims_read_the_first_nonzero_config_name():
    class Config:
        hidden_size = 0  # zero: the next name counts
        d_model = 48
        n_layer = 5
        num_heads = 6

    model = nn.Linear(3, 7)
    model.config = Config()
    assert model_dims(model) == (48, 5, 6)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_input_embedding_module(arch):
    model = tiny_model(arch)
    emb = input_embedding_module(model)
    assert emb is dict(model.named_modules())[EMBEDDING_NAMES[arch]]
    assert isinstance(emb, nn.Embedding) and emb.num_embeddings == 100  # testing.VOCAB_SIZE
    # BART and T5: the encoder's own embed_tokens module, sharing the weight of the model's input embedding
    assert (emb is model.get_input_embeddings()) == (arch not in ("bart", "t5"))
    assert emb.weight is model.get_input_embeddings().weight


def test_input_embedding_module_of_a_reference_model_and_an_error():
    model = BiLSTMAttentionClassifier(50, embed_dim=12, hidden_dim=10)
    assert input_embedding_module(model) is model.embedding
    with pytest.raises(TypeError, match="get_input_embeddings"):
        input_embedding_module(nn.Linear(2, 2))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_head_parameters(arch):
    model = tiny_model(arch)
    assert head_parameter_names(model) == HEAD_PARAMETERS[arch]


def test_is_head_parameter_matches_whole_parts():
    assert HEAD_MODULE_NAMES == ("classifier", "score", "classification_head", "logits_proj", "pre_classifier")
    assert is_head_parameter("classifier.out_proj.weight")
    assert is_head_parameter("base_model.model.score.weight")
    assert is_head_parameter("logits_proj.bias")
    # an attention output projection is not the head, nor is a name that merely contains a marker
    assert not is_head_parameter("model.encoder.layers.0.self_attn.out_proj.weight")
    assert not is_head_parameter("scores.weight")
    assert not is_head_parameter("bert.embeddings.word_embeddings.weight")


def test_device_and_dtype():
    model = tiny_model("bert")
    assert model_device(model) == torch.device("cpu")
    assert model_dtype(model) == torch.float32
    assert model_dtype(model.double()) == torch.float64
    empty = nn.Module()
    assert model_device(empty) == torch.device("cpu")
    assert model_device(empty, default="meta") == torch.device("meta")
    assert model_device(empty, default=None) is None
    assert model_dtype(empty) is None
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
