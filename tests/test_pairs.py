"""simper pairs on the tiny model: pairs written in the train format, ties dropped, rerun resumes."""

from __future__ import annotations

import json

import pytest
import torch

from simper.cli import main
from simper.data.formats import PreferencePair, load_pairs
from simper.data.sources import read_rows
from simper.data.tokenize import tokenize_pairs
from simper.errors import UserError
from simper.evaluate import score_ids
from simper.generate import LOOP_CHECK_EVERY, decode, encode_prompts, generate, nucleus, repeats
from simper.models import load_model, load_tokenizer
from simper.pairs import check_templates, pair_row


def run_pairs(model, out, prompts=6, max_new_tokens=8, *extra):
    """Run ``simper pairs`` on the tiny model and return its exit code."""
    args = ["pairs", "--model", str(model), "--output", str(out), "--num-prompts", str(prompts)]
    return main([*args, "--max-new-tokens", str(max_new_tokens), *extra])


def test_generate_returns_k_samples_per_prompt_in_order(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a much longer prompt here"}]]
    greedy = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=4, progress=False)
    alone = generate(model, tokenizer, prompts[1:], max_new_tokens=8, batch_size=4, progress=False)
    assert greedy.texts[1] == alone.texts[0]  # left padding does not change a greedy answer
    sampled = generate(model, tokenizer, prompts, num_samples=3, temperature=0.8, max_new_tokens=8, progress=False)
    assert [len(t) for t in sampled.texts] == [3, 3] and all(1 <= n <= 8 for t in sampled.tokens for n in t)
    assert sampled.samples_per_s > 0


def test_pairs_end_to_end_with_a_callable_reward_and_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "pairs.jsonl"
    reward = ["--reward", "reward_fixtures:length_reward", "--batch-size", "8"]
    assert run_pairs(tiny_model_dir, out, 6, 12, *reward) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and len((tmp_path / "pairs.jsonl.seen").read_text().split()) == 6
    for row in rows:
        assert row["score_chosen"] > row["score_rejected"]
        assert row["score_chosen"] == len(row["chosen"][0]["content"])
        assert row["reward"] == "reward_fixtures:length_reward" and row["kind"] in ("instructions", "arithmetic")
    pairs, fmt, _ = load_pairs(read_rows(str(out)))
    assert fmt == "conversational" and len(pairs) == len(rows)
    assert run_pairs(tiny_model_dir, out, 12, 12, *reward) == 0  # 12 prompts: the first 6 are skipped
    assert len((tmp_path / "pairs.jsonl.seen").read_text().split()) == 12


def test_tie_break_prefers_an_answer_that_ended_over_a_loop_or_a_cut_off_one():
    from simper.pairs import pick_pair

    loop = "Once upon a time there was a cat. " * 12
    sound = "A short answer that ended."
    assert pick_pair([0.5, 0.5, 0.5], [loop, sound, "cut off here"], [False, True, False]) == (1, 0)
    assert pick_pair([0.5, 0.5], [loop, sound], [False, True], tie_break="none") is None
    assert pick_pair([0.5, 0.5], [sound, "Another that ended."], [True, True]) is None  # a real tie
    # different scores: the score decides; among the best-scored, the sound one is chosen
    assert pick_pair([1.0, 1.0, 0.0], [loop, sound, sound + "!"], [False, True, True]) == (1, 2)


def test_builtin_reward_and_bad_reward(tiny_model_dir, tmp_path, capsys):
    assert run_pairs(tiny_model_dir, tmp_path / "p.jsonl", 4, 6) == 0
    summary = capsys.readouterr().err.splitlines()[-1]  # 4 prompts × 4 samples; a random model rarely ends
    assert summary.startswith("simper: of 16 samples, ") and "in a repetition loop" in summary
    assert run_pairs(tiny_model_dir, tmp_path / "q.jsonl", 4, 6, "--reward", "no_such_module:f") == 2
    assert "reward 'no_such_module:f': cannot import it" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        '{"prompt": 3}\n',
        "not json\n",
        "",
        '{"prompt": ["a string, not a message"]}\n',
        '{"prompt": [{"role": "user"}]}\n',
        '{"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n',
    ],
)
def test_bad_prompt_files(tiny_model_dir, tmp_path, capsys, bad):
    """Every bad prompt row is refused by its line and field before anything is generated or written."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(bad)
    code = run_pairs(tiny_model_dir, tmp_path / "o.jsonl", 6, 8, "--prompts", str(prompts))
    err = capsys.readouterr().err
    assert code == 2 and "prompts.jsonl" in err and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.seen").exists()


def test_a_template_that_refuses_a_conversation_is_named(tiny_model_dir):
    """Gemma's and Mistral's templates raise on a system turn: a one-line error, not a jinja traceback."""
    from simper.data.tokenize import render
    from simper.generate import render_prompts

    tokenizer = load_tokenizer(str(tiny_model_dir))
    tokenizer.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    answers = [{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]
    with pytest.raises(UserError, match=r"pairs.jsonl:line 3: the chat template refuses .*System role not supported"):
        render(PreferencePair(messages, *answers, "pairs.jsonl:line 3"), tokenizer)
    with pytest.raises(UserError, match=r"prompt 'Hi': the chat template refuses"):
        render_prompts(tokenizer, [messages])
    # a prompt file is checked row by row before any model loads, and named by its file and line
    rows = [{"id": "line 1", "prompt": "Hi"}, {"id": "line 2", "prompt": messages}]
    with pytest.raises(UserError, match=r"prompts.jsonl:line 2: the chat template refuses .*System role"):
        check_templates(tokenizer, rows, "prompts.jsonl")
    with pytest.raises(UserError, match=r"prompts.jsonl:id 'q7': the chat template refuses"):
        check_templates(tokenizer, [{"id": "q7", "prompt": messages}], "prompts.jsonl")


def test_a_pair_row_keeps_its_own_scores_over_the_prompt_rows(tmp_path):
    """A prompt file may be an earlier pairs file: its scores and cut-off flags must not replace the
    ones just computed (training reads the flags to leave out an EOS)."""
    old = {"prompt": "Hi", "score_chosen": 1.0, "chosen_truncated": False, "rejected_truncated": False, "kind": "x"}
    row = pair_row(old, ["good", "looping"], [True, False], [0.9, 0.2], (0, 1), "checker")
    assert (row["score_chosen"], row["score_rejected"], row["rejected_truncated"]) == (0.9, 0.2, True)
    assert row["reward"] == "checker" and row["kind"] == "x"


def test_prompts_are_handled_in_drawn_order_chunk_by_chunk(tiny_model_dir, tmp_path, monkeypatch):
    import simper.pairs

    monkeypatch.setattr(simper.pairs, "CHUNK", 2)  # a stopped run then holds the first prompts, not the longest
    assert run_pairs(tiny_model_dir, tmp_path / "p.jsonl", 6, 4) == 0
    seen = (tmp_path / "p.jsonl.seen").read_text().split()
    assert [set(seen[i : i + 2]) for i in (0, 2, 4)] == [
        {"train-0-00000", "train-0-00001"},
        {"train-0-00002", "train-0-00003"},
        {"train-0-00004", "train-0-00005"},
    ]


class _FakeVllm:
    """Stands in for the vllm package: records what simper asks for, answers with fixed samples."""

    def __init__(self):
        import importlib.machinery
        import types

        self.requests = []
        fake = self

        class LLM:
            def __init__(self, model, **kwargs):
                fake.model, fake.kwargs = model, kwargs

            def generate(self, prompts, params, use_tqdm=True):
                fake.requests.append((prompts, params))
                sample = types.SimpleNamespace
                outputs = [  # the longest sample runs into max_tokens
                    sample(text=f" answer {'x' * k} ", token_ids=[7] * (k + 1), finish_reason="stop")
                    for k in range(params.n)
                ]
                outputs[-1].finish_reason = "length"
                return [sample(outputs=outputs) for _ in prompts]

        class SamplingParams:
            def __init__(self, **kwargs):
                self.__dict__.update(kwargs)

        self.module = types.ModuleType("vllm")
        self.module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
        self.module.LLM, self.module.SamplingParams = LLM, SamplingParams


def test_vllm_backend_pairs_and_eval_with_a_stand_in_engine(tiny_model_dir, tmp_path, monkeypatch):
    import sys

    from simper.errors import UserError
    from simper.generate import resolve_backend

    assert resolve_backend("auto") == "transformers"  # no vllm here
    with pytest.raises(UserError, match="vLLM is not installed"):
        resolve_backend("vllm")
    fake = _FakeVllm()
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    out = tmp_path / "p.jsonl"
    reward = ["--reward", "reward_fixtures:length_reward"]
    assert run_pairs(tiny_model_dir, out, 3, 5, "--backend", "vllm", "--num-samples", "3", *reward) == 0
    prompts, params = fake.requests[0]
    assert (params.n, params.max_tokens, params.temperature, params.top_p) == (3, 5, 0.8, 0.95)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["chosen"][0]["content"] == "answer xx" for r in rows)  # stripped, longest
    assert all(r["rejected"][0]["content"] == "answer" for r in rows)
    assert all(r["chosen_truncated"] and not r["rejected_truncated"] for r in rows)
    assert encode_prompts(tokenizer, [rows[0]["prompt"]])[0] in [p["prompt_token_ids"] for p in prompts]

    evaluation = tmp_path / "eval"
    args = ["eval", str(tiny_model_dir), "--backend", "vllm", "--num-prompts", "4", "--output", str(evaluation)]
    assert main([*args, "--max-new-tokens", "6", "--num-pairs", "5"]) == 0
    result = json.loads((evaluation / "eval.json").read_text())
    assert result["mean_length"] == 1.0 and result["pairs"] == 5  # greedy: n=1, one token; 5 held-out pairs
    greedy, sampled = (params for _, params in fake.requests[-2:])  # the answers, then the diversity samples
    assert (greedy.n, greedy.temperature) == (1, 0.0) and (sampled.n, sampled.temperature) == (4, 0.8)


def test_decode_matches_model_generate_greedy(tiny_model_dir):
    """Our loop (finished rows cut from the batch and cache) gives transformers' greedy tokens."""
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    texts = ["hi", "a much longer prompt here with more words", "two words", "x y z w"]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    batch = {key: batch[key] for key in ("input_ids", "attention_mask")}  # transformers 4 adds token_type_ids
    eos, width = tokenizer.eos_token_id, batch["input_ids"].shape[1]
    free, _ = decode(model, **batch, max_new_tokens=12, stop={eos}, temperature=0.0, top_p=1.0)
    stop = {eos, free[0][2], free[2][6]}  # tokens the greedy answers produce: rows finish apart and get cut
    ours, logps = decode(model, **batch, max_new_tokens=12, stop=stop, temperature=0.0, top_p=1.0)
    theirs = model.generate(**batch, max_new_tokens=12, do_sample=False, eos_token_id=list(stop), pad_token_id=eos)
    for row, ids in enumerate(ours):
        assert ids == theirs[row, width:].tolist()[: len(ids)] and (len(ids) == 12 or ids[-1] in stop)
    assert len({len(ids) for ids in ours}) > 1
    twice, _ = decode(model, **batch, max_new_tokens=12, stop=stop, temperature=0.0, top_p=1.0, num_samples=2)
    assert twice == [ids for ids in ours for _ in range(2)]  # one prompt read, its cache repeated per sample
    prompts = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)]
    rescored = score_ids(model, prompts, ours)  # a full forward over the same ids: the same log-probs
    assert logps == pytest.approx([total for total, _ in rescored], abs=1e-4)  # #18: to 1e-4
    assert [count for _, count in rescored] == [len(ids) for ids in ours]


def test_generations_say_which_samples_ended(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompts = ["hi", "a much longer prompt", "two words"]  # plain strings: BOS + the text
    ids = torch.tensor(encode_prompts(tokenizer, prompts[:1]))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    free, _ = decode(model, **batch, max_new_tokens=10, stop={tokenizer.eos_token_id}, temperature=0.0, top_p=1.0)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, free[0][2]]  # the first answer now ends early
    result = generate(model, tokenizer, prompts, max_new_tokens=10, progress=False)
    assert result.finished[0] == [True] and result.tokens[0][0] <= 3
    ended = [flag for flags in result.finished for flag in flags]
    assert all(flag or n == 10 for flag, n in zip(ended, [n for ns in result.tokens for n in ns], strict=True))
    assert not all(ended)  # the others ran into the limit


def assistant(text):
    return {"role": "assistant", "content": text}


def test_prompts_are_generated_from_the_ids_training_sees(tokenizer):
    """Generation starts from the prompt ids training puts before a response: one BOS for a model
    that uses one, whether the prompt is chat messages, plain text, or text that writes the BOS."""
    chat = [{"role": "user", "content": "What is 2+2?"}]
    for prompt in (chat, "Question: hi\nAnswer:", "<s>Question: hi\nAnswer:"):
        answers = (" a", " b") if isinstance(prompt, str) else ([assistant("a")], [assistant("b")])
        pair = PreferencePair(prompt, *answers, "t")
        (trained,), _ = tokenize_pairs([pair], tokenizer, max_length=128, max_prompt_length=64)
        (generated,) = encode_prompts(tokenizer, [prompt])
        assert generated == trained.prompt and generated.count(tokenizer.bos_token_id) == 1
    assert encode_prompts(tokenizer, []) == []


@pytest.mark.parametrize("widths", [(256, 4096), (3, 20)])  # (3, 20): every fallback runs
def test_nucleus_keeps_what_transformers_top_p_keeps(monkeypatch, widths):
    import torch
    from transformers.generation.logits_process import TopPLogitsWarper

    import simper.generate

    monkeypatch.setattr(simper.generate, "NUCLEUS_WIDTHS", widths)
    torch.manual_seed(0)
    logits = torch.randn(6, 1000) * torch.tensor([0.5, 1, 2, 4, 8, 16])[:, None]
    probs = torch.softmax(logits, -1)
    ours = torch.zeros_like(probs)
    groups = nucleus(probs, 0.9)
    for rows, weights, index in groups:
        ours[rows] = ours[rows].scatter(-1, index, weights)
    assert sorted(r for rows, _, _ in groups for r in rows.tolist()) == list(range(6))
    assert len(groups) == (2 if widths == (256, 4096) else 3)
    theirs = torch.softmax(TopPLogitsWarper(0.9)(None, logits.clone()), -1)
    assert torch.equal(ours > 0, theirs > 0)
    torch.testing.assert_close(ours / ours.sum(-1, keepdim=True), theirs)


def test_repeats_flags_a_cycling_tail_and_not_varied_tokens():
    assert repeats(list(range(7)) * 20) and not repeats(list(range(200)))
    assert not repeats([1, 2, 3] * 20)  # too short to judge: under LOOP_WINDOW tokens
    assert not repeats([i // 2 for i in range(200)])  # every token twice, but no cycle


def test_a_looping_sample_stops_at_the_first_loop_check_that_catches_it(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    texts = ["hi", "two words", "x y z w", "a much longer prompt here with more words"]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    batch = {key: batch[key] for key in ("input_ids", "attention_mask")}  # transformers 4 adds token_type_ids
    settings = dict(max_new_tokens=160, stop={tokenizer.eos_token_id}, temperature=0.0, top_p=1.0)
    full, _ = decode(model, **batch, **settings)
    cut, _ = decode(model, **batch, **settings, stop_loops=True)
    for whole, stopped in zip(full, cut, strict=True):
        checks = range(LOOP_CHECK_EVERY, len(whole) + 1, LOOP_CHECK_EVERY)
        caught = next((n for n in checks if repeats(whole[:n])), len(whole))
        assert stopped == whole[:caught]
    assert any(len(stopped) < len(whole) for whole, stopped in zip(full, cut, strict=True))  # greedy tiny models loop


def test_prompts_whose_samples_tie_get_more_until_they_score_apart(tiny_model_dir, tmp_path, monkeypatch):
    """--max-samples: only the prompts whose k samples all score alike are sampled again, k at a time
    (the last draw topped up to max_samples), each draw with its own seed; a prompt that splits is
    paired over all its samples, one that never does is a tie."""
    import simper.pairs
    from simper.config import PairsConfig
    from simper.generate import Generations
    from simper.pairs import REDRAW_SEED, make_pairs

    calls = []

    def policy(tokenizer, prompts, *, num_samples, seed, on_batch, **settings):
        draw = len(calls)
        calls.append(([p[-1]["content"] for p in prompts], num_samples, seed))
        texts = []
        for prompt in prompts:
            name = prompt[-1]["content"]
            apart = name == "apart" or (name == "split" and draw == 1)  # lengths differ: the reward tells them apart
            texts.append([("y" * (i + 3)) if apart else f"z{i}" for i in range(num_samples)])
        finished = [[True] * num_samples for _ in prompts]
        on_batch(list(range(len(prompts))), texts, finished)
        return Generations(texts, [[len(t) for t in ts] for ts in texts], finished, 1.0, [[[]] * num_samples] * 3)

    monkeypatch.setattr(simper.pairs, "load_generator", lambda *a, **k: policy)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": n, "prompt": n}) + "\n" for n in ("apart", "split", "never")))
    out = tmp_path / "pairs.jsonl"
    config = PairsConfig(
        output=str(out), model=str(tiny_model_dir), prompts=str(prompts), reward="reward_fixtures:length_reward"
    )
    config.num_samples, config.max_samples, config.seed = 2, 5, 3
    counts = make_pairs(config)

    assert calls == [
        (["apart", "split", "never"], 2, 3),
        (["split", "never"], 2, 3 + REDRAW_SEED),
        (["never"], 1, 3 + 2 * REDRAW_SEED),  # topped up to 5, not 6
    ]
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"apart", "split"}  # "never" tied on all 5 samples: dropped
    assert (rows["apart"]["num_samples"], rows["split"]["num_samples"]) == (2, 4)
    assert (rows["split"]["chosen"][0]["content"], rows["split"]["rejected"][0]["content"]) == ("yyyy", "z0")
    assert (rows["split"]["score_chosen"], rows["split"]["score_rejected"]) == (4.0, 2.0)
    assert counts["tied_at_k"] == 2 and counts["redrawn"] == 2 and counts["split_by_redraw"] == 1
    assert (counts["pairs"], counts["ties"], counts["samples"]) == (2, 1, 2 * 3 + 2 * 2 + 1)
    assert sorted((tmp_path / "pairs.jsonl.seen").read_text().split()) == ["apart", "never", "split"]


def test_max_samples_below_k_is_refused(tiny_model_dir, tmp_path, capsys):
    assert run_pairs(tiny_model_dir, tmp_path / "p.jsonl", 2, 4, "--num-samples", "4", "--max-samples", "3") == 2
    assert "max_samples must be 0 or ≥ num_samples (4), got 3" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()
    assert run_pairs(tiny_model_dir, tmp_path / "p.jsonl", 2, 4, "--max-samples", "8", "--temperature", "0") == 2
    assert "at temperature 0 every sample is the same greedy answer" in capsys.readouterr().err
