"""Calling a model's forward by meaning: Captum's ``additional_forward_args`` and position ids from the mask.

References: the same model called with keyword arguments written out here, and each row run alone without padding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attnfaith import LeaveOneOut
from attnfaith._inputs import call_model, prepare_batch
from attnfaith.attention.forward_args import absolute_positions, bind_additional_forward_args
from attnfaith.attr import AttentionAttribution, GradientImportance
from attnfaith.testing import DECODER_ARCHITECTURES, tiny_batch, tiny_model


@pytest.fixture(scope="module")
def bert():
    model = tiny_model("bert", num_labels=2, seed=1).eval()
    return model, tiny_batch("bert", model, batch_size=3, seq_len=8)


def renamed_second_parameter(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose forward's second parameter is unknown (as GPT-2's ``cache`` was to attnfaith in
    transformers 5.24): ``(input_ids, frobnicator, attention_mask, token_type_ids, **kwargs)``."""

    class Renamed(type(model)):
        def forward(self, input_ids=None, frobnicator=None, attention_mask=None, token_type_ids=None, **kwargs):
            assert frobnicator is None, "the mask landed in the unknown second slot"
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids, **kwargs)

    clone = copy.deepcopy(model)
    clone.__class__ = Renamed
    return clone


def test_mask_survives_an_unknown_second_parameter(bert):
    model, enc = bert
    renamed = renamed_second_parameter(model)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    got = AttentionAttribution(renamed, layer=-1, query="cls").attribute(ids, additional_forward_args=(mask,))
    expected = AttentionAttribution(model, layer=-1, query="cls").attribute(dict(enc))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the reference: the original model called with keywords written out here
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        out = call_model(renamed, prepare_batch(renamed, ids, (mask,)))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_gpt2_mask_goes_to_the_mask_not_the_cache():
    model = tiny_model("gpt2", num_labels=2).eval()
    enc = tiny_batch("gpt2", model, batch_size=3, seq_len=8)
    batch = prepare_batch(model, enc["input_ids"], (enc["attention_mask"],))
    assert torch.equal(batch.attention_mask, enc["attention_mask"])
    assert not batch.token_args and not batch.const_args


def test_second_entry_is_token_type_ids(bert):
    model, enc = bert
    ids, mask = enc["input_ids"], enc["attention_mask"]
    tt = torch.zeros_like(ids)
    tt[:, 4:] = 1
    got = call_model(model, prepare_batch(model, ids, (mask, tt)))
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).logits
        plain = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert not torch.allclose(ref, plain)  # the token types matter, so the test can fail
    by_name = call_model(model, prepare_batch(model, ids, (mask, {"token_type_ids": tt})))
    torch.testing.assert_close(by_name, ref, rtol=0, atol=0)


def test_entries_that_cannot_be_placed_name_themselves():
    llama = tiny_model("llama", num_labels=2)
    ids = torch.tensor([[1, 5, 6, 7]])
    mask = torch.ones_like(ids)
    with pytest.raises(ValueError, match=r"additional_forward_args\[1\] stands for token_type_ids"):
        bind_additional_forward_args(llama, (mask, torch.zeros_like(ids)))
    with pytest.raises(ValueError, match=r"additional_forward_args\[3\] cannot be placed"):
        bind_additional_forward_args(tiny_model("bert"), (mask, None, None, ids))
    with pytest.raises(ValueError, match=r"additional_forward_args\[1\].*no parameter 'bogus'"):
        bind_additional_forward_args(llama, (mask, {"bogus": ids}))
    with pytest.raises(ValueError, match=r"'attention_mask' is given twice"):
        bind_additional_forward_args(llama, (mask, {"attention_mask": mask}))

    class NoMask(nn.Module):
        def forward(self, input_ids):
            return input_ids.float()

    with pytest.raises(ValueError, match=r"additional_forward_args\[0\] stands for attention_mask"):
        bind_additional_forward_args(NoMask(), (mask,))
    with pytest.raises(ValueError, match=r"inputs\['frobnicator'\].*no such parameter"):
        prepare_batch(llama, {"input_ids": ids, "frobnicator": ids})


def test_padding_for_a_model_without_mask_is_refused():
    class NoMask(nn.Module):
        def forward(self, input_ids):
            return input_ids.float()

    with pytest.raises(ValueError, match="attention_mask: the inputs have padding"):
        prepare_batch(NoMask(), {"input_ids": torch.tensor([[3, 4, 0]]), "attention_mask": torch.tensor([[1, 1, 0]])})


# ------------------------------------------------------------------------------------ position ids from the mask


def _unpadded_rows(model, enc) -> torch.Tensor:
    """Each row alone, without its padding, called by keywords written out here."""
    out = []
    with torch.no_grad():
        for ids, mask in zip(enc["input_ids"], enc["attention_mask"]):
            real = ids[mask.bool()][None]
            out.append(model(input_ids=real, attention_mask=torch.ones_like(real)).logits)
    return torch.cat(out)


@pytest.mark.parametrize("arch", DECODER_ARCHITECTURES)
def test_left_padded_rows_equal_unpadded_rows(arch):
    model = tiny_model(arch, num_labels=2).eval()
    enc = tiny_batch(arch, model, batch_size=3, seq_len=9)  # left-padded
    assert (enc["attention_mask"][:, 0] == 0).any()
    with torch.no_grad():
        got = call_model(model, prepare_batch(model, enc))
    torch.testing.assert_close(got, _unpadded_rows(model, enc), rtol=1e-5, atol=1e-5)


def test_gpt2_without_position_ids_would_depend_on_padding():
    """The check above can fail: GPT-2's own default (positions 0..T-1 whatever the mask) differs."""
    model = tiny_model("gpt2", num_labels=2).eval()
    enc = tiny_batch("gpt2", model, batch_size=3, seq_len=9)
    with torch.no_grad():
        default = model(**enc).logits
    assert (default - _unpadded_rows(model, enc)).abs().max() > 1e-3
    assert absolute_positions(model) == "position_ids"
    assert absolute_positions(tiny_model("llama")) is None
    assert absolute_positions(tiny_model("roberta")) is None  # positions derived from the ids (padding_idx)


@pytest.mark.parametrize("make", [lambda m: LeaveOneOut(m), lambda m: LeaveOneOut(m, mode="mask"),
                                  lambda m: GradientImportance(m)])
def test_gpt2_row_results_do_not_depend_on_batch_mates(make):
    model = tiny_model("gpt2", num_labels=2, seed=3).eval()
    enc = tiny_batch("gpt2", model, batch_size=3, seq_len=9, lengths=[9, 5, 7])
    method = make(model)
    together = method.attribute(enc)
    for b in range(3):
        real = enc["attention_mask"][b].bool()
        alone = method.attribute({"input_ids": enc["input_ids"][b][real][None]})
        torch.testing.assert_close(together[b][real], alone[0], rtol=1e-4, atol=1e-6)


def test_left_padding_on_fixed_absolute_positions_is_refused():
    bart = tiny_model("bart", num_labels=2)
    enc = tiny_batch("bart", bart, batch_size=2, seq_len=8)
    ids, mask = enc["input_ids"].clone(), enc["attention_mask"].clone()
    n = int(mask[1].sum())
    ids[1], mask[1] = ids[1].roll(8 - n), mask[1].roll(8 - n)  # row 1 left-padded
    with pytest.raises(ValueError, match="left-padded.*no position_ids.*padding_side = 'right'"):
        prepare_batch(bart, {"input_ids": ids, "attention_mask": mask})
    assert absolute_positions(bart) == "fixed"
    prepare_batch(bart, enc)  # right padding is fine
