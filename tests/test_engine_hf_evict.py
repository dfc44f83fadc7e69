"""The hf engine's eviction of finished rows: the same completions as running each batch to
its end, for fewer decode slots."""

from __future__ import annotations

from lidr.engines.base import ChatRequest, Sampling
from lidr.engines.hf import HFEngine
from lidr.stages.translate import CLOSE, PREFILL


def _requests():
    reqs = []
    for k, text in enumerate(["Say hi.", "Count to ten in words.", "Write a long story about the sea.",
                              "What is 2 plus 2?", "Name a colour.", "Describe a cat in detail.",
                              "List five fruits.", "Hello"]):
        cap = (6, 40, 17)[k % 3]  # different caps inside one batch
        reqs.append(ChatRequest(f"r{k}", [{"role": "user", "content": text}], max_new_tokens=cap))
    # Translation-style requests: a prefilled turn and a stop string.
    reqs.append(ChatRequest("t0", [{"role": "user", "content": "Translate into Spanish: good morning"}],
                            max_new_tokens=30, prefill=PREFILL, stop=(CLOSE,)))
    reqs.append(ChatRequest("t1", [{"role": "user", "content": "Translate into French: thank you"}],
                            max_new_tokens=12, prefill=PREFILL, stop=(CLOSE, "\n\n")))
    return reqs


def test_eviction_keeps_completions_and_saves_slots(tiny_model_dir, smollm2_dir):
    reqs = _requests()
    for model_dir in (tiny_model_dir, smollm2_dir):
        engine = HFEngine(str(model_dir), dtype="float32", batch_size=len(reqs))
        results = {}
        for every in (0, 4):
            engine.evict_every, engine.slots, engine.useful = every, 0, 0
            results[every] = (engine.generate(reqs, Sampling(repetition_penalty=1.1)), engine.slots)
        (full, slots_full), (evicted, slots_evicted) = results[0], results[4]
        assert evicted == full, model_dir
        for r, c in zip(reqs, evicted):
            assert c.n_tokens <= r.max_new_tokens
        # Rows with a small cap or an early end no longer ride along to the batch's longest row.
        assert slots_evicted < slots_full, (slots_evicted, slots_full)
        assert slots_evicted >= sum(c.n_tokens for c in evicted)
        engine.close()


def test_a_row_never_stops_on_another_rows_stop_string(tiny_model_dir):
    """Rows of one generate call with different stop strings: each ends on its own only."""
    engine = HFEngine(str(tiny_model_dir), dtype="float32", batch_size=8)
    free = ChatRequest("free", [{"role": "user", "content": "Write a long story about the sea."}], max_new_tokens=40)
    (alone,) = engine.generate([free], Sampling())
    assert len(alone.text) > 20, alone
    stop = alone.text[8:14]  # a piece of the free row's own text, from its middle
    other = ChatRequest("other", [{"role": "user", "content": "Say hi."}], max_new_tokens=40, stop=(stop,))
    together = engine.generate([other, free], Sampling())
    assert together[1] == alone, (stop, together[1])
    engine.close()
