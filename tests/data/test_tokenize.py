"""Tokenization: one BOS, one EOS, prompt a token prefix, truncation rules, drops counted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simper.data.formats import PreferencePair
from simper.data.tokenize import render, tokenize_pairs


def chat(prompt, chosen, rejected):
    return PreferencePair(
        [{"role": "user", "content": prompt}],
        [{"role": "assistant", "content": chosen}],
        [{"role": "assistant", "content": rejected}],
        "test",
    )


def test_chat_pair_has_one_bos_one_eos_and_the_template_prompt(tokenizer):
    pair = chat("What is 2+2?", "4", "5")
    (tok,), drops = tokenize_pairs([pair], tokenizer, max_length=128, max_prompt_length=64)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for response in (tok.chosen, tok.rejected):
        sequence = tok.prompt + response
        assert sequence.count(bos) == 1 and sequence[0] == bos
        assert response[-1] == eos and response.count(eos) == 1
    prompt_text, chosen_text, _ = render(pair, tokenizer)
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert chosen_text == "4<|im_end|>\n"
    assert tokenizer.decode(tok.chosen) == "4<|im_end|>"
    assert not drops


def test_a_response_marked_truncated_gets_no_eos(tokenizer):
    """A response cut off at max_new_tokens never ended: training must not teach an EOS there."""
    from dataclasses import replace

    for pair in (chat("Count.", "one two", "one two three"), PreferencePair("Count:", " one two", " one", "t")):
        (whole,), _ = tokenize_pairs([pair], tokenizer, max_length=128, max_prompt_length=64)
        (cut,), _ = tokenize_pairs(
            [replace(pair, chosen_truncated=True)], tokenizer, max_length=128, max_prompt_length=64
        )
        assert cut.chosen == whole.chosen[:-1] and whole.chosen[-1] == tokenizer.eos_token_id
        assert cut.rejected == whole.rejected and cut.rejected[-1] == tokenizer.eos_token_id


def test_text_pair_gets_eos_appended_and_no_second_bos(tokenizer):
    pair = PreferencePair("<s>Question: hi\nAnswer:", " hello", " bye", "test")
    (tok,), _ = tokenize_pairs([pair], tokenizer, max_length=64, max_prompt_length=32)
    assert tok.prompt.count(tokenizer.bos_token_id) == 1
    assert tok.chosen[-1] == tokenizer.eos_token_id


def test_truncation_keeps_prompt_end_and_cuts_responses(tokenizer):
    pair = chat("word " * 200 + "END", "a " * 100, "b " * 100)
    (tok,), _ = tokenize_pairs([pair], tokenizer, max_length=48, max_prompt_length=16)
    assert len(tok.prompt) == 16 and tok.prompt[0] == tokenizer.bos_token_id
    assert tokenizer.decode(tok.prompt[1:]).endswith("END<|im_end|>\n<|im_start|>assistant\n")
    assert len(tok.prompt) + len(tok.chosen) == 48 and tok.chosen[-1] != tokenizer.eos_token_id


def test_pair_without_room_for_a_response_is_dropped(tokenizer):
    pair = chat("word " * 50, "a", "b")
    kept, _ = tokenize_pairs([pair], tokenizer, max_length=17, max_prompt_length=16)
    assert len(kept) == 1 and len(kept[0].chosen) == 1  # one response token fits, no EOS
    kept, drops = tokenize_pairs([pair], tokenizer, max_length=16, max_prompt_length=16)
    assert not kept and drops == {"no response token left after truncation": 1}
    kept, _ = tokenize_pairs([PreferencePair("", "a", "b", "t")], tokenizer, max_length=8, max_prompt_length=4)
    assert len(kept) == 1  # an empty text prompt still has the BOS to predict from


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=0, max_size=300), st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_any_unicode_keeps_a_response(tokenizer, prompt, chosen, rejected):
    pair = chat(prompt, chosen, rejected)
    kept, drops = tokenize_pairs([pair], tokenizer, max_length=64, max_prompt_length=32)
    for tok in kept:
        assert tok.chosen and tok.rejected and len(tok.prompt) <= 32
        assert tok.prompt[0] == tokenizer.bos_token_id
        for response in (tok.chosen, tok.rejected):
            sequence = tok.prompt + response
            assert sequence.count(tokenizer.bos_token_id) == 1 and len(sequence) <= 64
            assert response.count(tokenizer.eos_token_id) <= 1
    assert len(kept) + sum(drops.values()) == 1


def test_drop_truncated_leaves_out_pairs_with_a_cut_off_response(tokenizer, tmp_path):
    import json

    from simper.data.pipeline import prepare_data

    rows = [
        {"prompt": "p1", "chosen": "a", "rejected": "b"},
        {"prompt": "p2", "chosen": "a", "rejected": "b", "chosen_truncated": True},
        {"prompt": "p3", "chosen": "a", "rejected": "b", "rejected_truncated": True, "chosen_truncated": False},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = {"split": "train", "eval_split": "test", "eval_fraction": 0.0, "max_length": 64, "max_prompt_length": 32}
    everything = prepare_data([str(path)], [], tokenizer=tokenizer, seed=0, **settings)
    finished = prepare_data([str(path)], [], tokenizer=tokenizer, seed=0, drop_truncated="any", **settings)
    assert len(everything.train) == 3 and len(finished.train) == 1
    assert "2 with a response cut off at generation" in finished.report[-1]
    chosen_ended = prepare_data([str(path)], [], tokenizer=tokenizer, seed=0, drop_truncated="chosen", **settings)
    assert [p.prompt for p in chosen_ended.train] == [p.prompt for p in everything.train[::2]]  # p3 kept
    assert "1 with the chosen response cut off at generation" in chosen_ended.report[-1]


def test_drop_truncated_takes_true_false_and_the_named_filters():
    from simper.config import load_config
    from simper.errors import UserError

    assert load_config(None, ["data.drop_truncated=true"]).data.drop_truncated == "any"
    assert load_config(None, ["data.drop_truncated=false"]).data.drop_truncated == "none"
    assert load_config(None, ["data.drop_truncated=chosen"]).data.drop_truncated == "chosen"
    with pytest.raises(UserError, match=r"data\.drop_truncated: 'rejected' is not one of none, chosen, any"):
        load_config(None, ["data.drop_truncated=rejected"])


def test_balance_by_length_keeps_as_many_chosen_shorter_as_not():
    from simper.data.pipeline import balance_by_length
    from simper.data.tokenize import TokenizedPair

    def pair(n_chosen, n_rejected, tag):
        return TokenizedPair([tag], [1] * n_chosen, [2] * n_rejected)

    pairs = [pair(1, 3, i) for i in range(7)] + [pair(3, 1, 10), pair(2, 2, 11), pair(5, 4, 12)]
    kept, dropped = balance_by_length(pairs)
    assert dropped == 4 and len(kept) == 6
    assert sum(len(p.chosen) < len(p.rejected) for p in kept) == 3
    assert [p.prompt[0] for p in kept] == sorted(p.prompt[0] for p in kept)  # order kept
    assert balance_by_length(pairs)[0] == kept  # a fixed draw
    assert balance_by_length(kept) == (kept, 0)


def _sentencepiece_like():
    """A Llama 2 / Mistral style tokenizer trained here: Metaspace pre-tokenizer with a dummy prefix
    ("▁" before the first word of any text tokenized), <s> added to plain text, Zephyr's template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    metaspace = dict(replacement="▁", prepend_scheme="first")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Metaspace(**metaspace)]
    )
    tok.decoder = decoders.Metaspace(**metaspace)
    corpus = ["What is 2+2?\nThe answer is 4.\nThe\n", "The answer is 4. The answer", "hello world"] * 20
    specials = ["<unk>", "<s>", "</s>"]
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(vocab_size=200, special_tokens=specials))
    bos = [("<s>", tok.token_to_id("<s>"))]
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=bos)
    zephyr = (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + eos_token + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>",
        chat_template=zephyr,
    )  # fmt: skip


def test_a_sentencepiece_response_is_the_tokens_that_follow_its_prompt():
    """Tokenized alone, "The answer" starts with "▁The"; after Zephyr's "<|assistant|>\\n" the model
    reads (and generates) "The": the response must be the latter, or every pair's first log-prob is
    that of a token the model would not write there."""
    tokenizer = _sentencepiece_like()
    pair = chat("What is 2+2?", "The answer is 4.", "hello")
    prompt, chosen, _ = render(pair, tokenizer)
    (tokenized,), _ = tokenize_pairs([pair], tokenizer, max_length=64, max_prompt_length=32)
    joint = tokenizer(prompt + chosen, add_special_tokens=False)["input_ids"]
    alone = tokenizer(chosen, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(alone[:1]) == ["▁The"]  # what the old rule trained on
    assert tokenized.chosen[0] != alone[0] and tokenizer.convert_ids_to_tokens(tokenized.chosen[:1]) == ["The"]
    assert tokenized.prompt[1:] + tokenized.chosen == joint[: len(joint) - 1]  # "\n" after the EOS dropped


def _gemma_like():
    """A tokenizer whose EOS (``<eos>``) is not the token its template ends a turn with
    (``<end_of_turn>``, followed by a newline), as Gemma's and Llama 3's (``<|eot_id|>``) are."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=alphabet)
    tok.train_from_iterator(["The answer is 4. What is 2+2? hello world"] * 20, trainer=trainer)
    template = (
        "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "{{ '<start_of_turn>' + role + '\\n' + m['content'] + "
        "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", chat_template=template,
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )  # fmt: skip


def test_a_response_ends_with_the_templates_end_of_turn_not_a_second_eos():
    """Generation stops at ``<end_of_turn>``: a response that ended is trained to end there (not on a
    ``<eos>`` after it, which the model never writes), and one cut off keeps neither."""
    tokenizer = _gemma_like()
    end_of_turn, eos = tokenizer.convert_tokens_to_ids(["<end_of_turn>", "<eos>"])
    ended = chat("What is 2+2?", "The answer is 4.", "hello")
    cut = PreferencePair(ended.prompt, ended.chosen, ended.rejected, "cut", chosen_truncated=True)
    (done, truncated), _ = tokenize_pairs([ended, cut], tokenizer, max_length=64, max_prompt_length=32)
    assert done.chosen[-1] == end_of_turn and eos not in done.chosen and done.chosen.count(end_of_turn) == 1
    assert truncated.chosen == done.chosen[:-1] and end_of_turn not in truncated.chosen
    assert tokenizer.decode(done.chosen[:-1]) == "The answer is 4."


def test_a_turn_end_that_is_special_only_among_added_tokens_ends_the_response():
    """Llama 3's <|eot_id|> is an added special token, not EOS (<|end_of_text|>) nor listed among the
    additional special tokens: the response must still end with it (and no EOS after)."""
    from tokenizers import AddedToken

    tokenizer = _gemma_like()
    tokenizer.add_tokens([AddedToken("<|eot_id|>", special=True)])
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<start_of_turn>' + m['role'] + '\\n' + m['content'] + '<|eot_id|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>assistant\\n' }}{% endif %}"
    )
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert eot not in tokenizer.all_special_ids
    (pair,), _ = tokenize_pairs([chat("What is 2+2?", "The answer is 4.", "hello")], tokenizer, max_length=64,
                                max_prompt_length=32)  # fmt: skip
    assert pair.chosen[-1] == eot and tokenizer.eos_token_id not in pair.chosen
