"""ONNX Runtime GenAI against the ct2 and hf engines on the CPU, float32, greedy, in one run.

    pip install onnxruntime-genai==0.18.0 onnx_ir   # not a lidr dependency: measured first
    python -m onnxruntime_genai.models.builder -m MODEL_DIR -o ORT_DIR -p fp32 -e cpu
    python benchmarks/bench_ort_genai.py ORT_DIR [--per-language 16]

Issue 10 asks for another inference library only if it is faster than CTranslate2 with equal
text. The workload is the generation workload of bench_engines.py (the bundled demo prompts in
en/es/fr/de as chat text, 128 new tokens, repetition penalty 1.0), at batch 1 (the first 6
requests, one at a time), 32 and 64. Both engines get the same prompt tokens (lidr.chat);
ONNX Runtime GenAI pads a batch and runs every row to the batch's longest (it has no per-row
stop inside a batch; a finished row keeps decoding padding), which is counted against it as
wall time: useful tokens are those up to each row's end of turn, as for ct2. Exact match:
greedy texts equal to ct2 float32's (which equal the hf engine's, benchmarks/RESULTS.md §5).
Results: benchmarks/results/ort_genai.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from bench_engines import cpu_flags, float32_baselines
from common import demo_prompts, machine, save, timed
from lidr.chat import format_chat
from lidr.engines.ct2 import CT2Engine
from lidr.models import bundled_model_dir
from lidr.stages import generate

MAX_NEW = 128


class OrtGenAI:
    """Greedy batched generation with onnxruntime-genai from prompt token ids."""

    def __init__(self, ort_dir: str, tokenizer, stop_ids: list[int]):
        import onnxruntime_genai as og

        self.og, self.tokenizer, self.stop_ids = og, tokenizer, set(stop_ids)
        cfg = json.loads((Path(ort_dir) / "genai_config.json").read_text())
        # Rows are padded with pad_token_id and the library masks that id; SmolLM2's pad is its
        # end-of-turn token, which chat prompts contain, so padding uses <|endoftext|> (0).
        self.pad = 0
        if cfg["model"]["pad_token_id"] != self.pad:
            cfg["model"]["pad_token_id"] = self.pad
            (Path(ort_dir) / "genai_config.json").write_text(json.dumps(cfg, indent=4))
        self.model = og.Model(ort_dir)

    def generate(self, prompt_ids: list[list[int]], batch: int) -> list[tuple[str, int]]:
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))  # as ct2's batches
        out: dict[int, tuple[str, int]] = {}
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            rows = [prompt_ids[i] for i in idx]
            for i, r in zip(idx, self._batch(rows)):
                out[i] = r
        return [out[i] for i in range(len(prompt_ids))]

    def _batch(self, rows: list[list[int]]) -> list[tuple[str, int]]:
        og = self.og
        width = max(len(r) for r in rows)
        tokens = np.full((len(rows), width), self.pad, dtype=np.int32)
        for j, r in enumerate(rows):
            tokens[j, :len(r)] = r  # right padding: the library masks it (left padding changed the text)
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=width + MAX_NEW, batch_size=len(rows), do_sample=False)
        gen = og.Generator(self.model, params)
        gen.append_tokens(tokens)
        new: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        while not gen.is_done() and not all(done):
            gen.generate_next_token()
            for j, t in enumerate(gen.get_next_tokens()):
                if done[j]:
                    continue
                if int(t) in self.stop_ids:
                    done[j] = True
                else:
                    new[j].append(int(t))
                    done[j] = len(new[j]) >= MAX_NEW
        return [(self.tokenizer.decode(ids, skip_special_tokens=True), len(ids)) for ids in new]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ort_dir", help="the model converted by onnxruntime_genai.models.builder (fp32, cpu)")
    ap.add_argument("--per-language", type=int, default=16)
    ap.add_argument("--batch1", type=int, default=6)
    args = ap.parse_args()
    info = machine() | {"cpu_flags": cpu_flags(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}", flush=True)
    model_dir = str(bundled_model_dir())
    requests = generate.generation_requests(demo_prompts(args.per_language), MAX_NEW, None)
    result = {"machine": info, "model": "SmolLM2-135M-Instruct", "workload": "generation, greedy, rp 1.0",
              "runs": {}}
    reference = float32_baselines(model_dir, requests, args.batch1, result)[32]
    # The ct2 engine's tokenizer and end-of-turn ids: ORT gets the same prompt tokens and stops.
    ct2 = CT2Engine(model_dir, compute_type="float32")
    prompt_ids = ct2.tokenizer([format_chat(ct2.tokenizer, r.messages, r.prefill) for r in requests],
                               add_special_tokens=False)["input_ids"]
    stop_ids = ct2.stop_ids
    ct2.close()
    load_s, ort = timed(lambda: OrtGenAI(args.ort_dir, ct2.tokenizer, stop_ids))
    import onnxruntime_genai

    result["ort_load_seconds"] = round(load_s, 1)
    result["onnxruntime_genai"] = onnxruntime_genai.__version__
    for batch in (1, 32, 64):
        ids = prompt_ids[: args.batch1] if batch == 1 else prompt_ids
        try:
            s, out = timed(lambda: ort.generate(ids, batch))
        except RuntimeError as e:  # 0.18 refuses batches over 32 for this model
            result["runs"][f"ort-genai float32 batch {batch}"] = {"error": str(e)}
            print(f"ort-genai batch {batch}: {e}", flush=True)
            continue
        tokens = sum(n for _, n in out)
        same = sum(a.strip() == b.strip() for (a, _), b in zip(out, reference))
        ct2_run = result["runs"][f"ct2 float32 batch {batch}"]
        result["runs"][f"ort-genai float32 batch {batch}"] = {
            "seconds": round(s, 2), "tokens": tokens, "tok_s": round(tokens / s, 1),
            "ratio_vs_ct2": round(tokens / s / ct2_run["tok_s"], 2),
            "ratio_vs_hf": round(tokens / s / result["runs"][f"hf float32 batch {batch}"]["tok_s"], 2),
            "exact_match_vs_ct2": f"{same}/{len(out)}"}
        print(f"ort-genai batch {batch}: {tokens / s:.1f} tok/s ({tokens} tokens, {s:.1f} s), "
              f"{tokens / s / ct2_run['tok_s']:.2f}x ct2, {same}/{len(out)} texts equal", flush=True)
    print(save("ort_genai", result))


if __name__ == "__main__":
    main()
