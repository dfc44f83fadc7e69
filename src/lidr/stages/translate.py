"""Stage 2, self-translation: each English answer into every other language, and each
native answer into English, with the paper's prompt and a `<translated>` primer.

Parsing (`parse_translation`) takes the text after the last `<translated>` before the
first `</translated>`; nested opening tags occur with small models. When generation
ends at the end of the turn without a closing tag, the text after the last opening tag
is kept by default (`accept_unclosed`): the model closed its turn, so the answer is
complete, and small models often drop the tag. A translation cut off at the token
limit without a closing tag is a failure ("truncated"): it is usually a loop.

Worked examples (`translation.examples`, few-shot self-translation) go before the request as
earlier turns of the same conversation: the paper's prompt on the example's text, answered
with its translation between the tags. The model still translates its own answers; the
examples show it that a worked answer is translated line by line, not summarised.

The token limit (`translation_cap`) scales with the source and with how many more tokens
the target language takes than the source's: with SmolLM2's tokenizer a Russian text takes
4.3x the tokens of its English original, a Thai one 7.8x (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lidr.data.prompts import DataError, read_records, resolve_path
from lidr.engines.base import ChatRequest, Completion
from lidr.languages import get_language
from lidr.stages.generate import sample_id, sample_of

# Tokens a text takes relative to its English version: the median over 2,000 human-aligned
# Alpagasus instructions with SmolLM2's tokenizer (benchmarks/bench_translation_cap.py) for
# the languages measured; by script, and on the high side, for the others (byte-level BPE:
# a script of 3-byte characters costs about what Thai does). A tokenizer that covers other
# scripts better only gets a looser cap; the cap never shrinks below `factor` x the source.
TOKEN_COST = {"en": 1.0, "es": 2.25, "fr": 2.3, "it": 2.25, "de": 2.65, "ru": 4.35, "ar": 4.2,
              "zh": 2.8, "ja": 4.2, "ko": 5.55, "th": 7.8}
SCRIPT_COST = {"Latin": 3.0, "Cyrillic": 4.5, "Greek": 5.0, "Han": 3.0, "Japanese": 4.5, "Hangul": 6.0,
               "Arabic": 4.5, "Hebrew": 4.5, "Devanagari": 8.0, "Bengali": 8.0, "Telugu": 8.0,
               "Tamil": 8.0, "Thai": 8.0}

OPEN, CLOSE = "<translated>", "</translated>"
PREFILL = OPEN + "\n"
TRANSLATION_PROMPT = (
    "Please translate the following sentences into {language}. The input sentences are "
    "wrapped by <sentence> and </sentence>:\n\n<sentence>\n{text}\n</sentence>\n\n"
    "The translated result should be wrapped by <translated> and </translated>."
)
_SENTENCE_TAGS = re.compile(r"</?sentence>")

PARSED = ("ok", "ok_unclosed")


# One worked example: language code -> the same text in that language.
Example = dict[str, str]


def _request_turn(text: str, target: str) -> dict[str, str]:
    return {"role": "user", "content": TRANSLATION_PROMPT.format(language=get_language(target).name, text=text)}


def translation_message(text: str, target: str, source: str | None = None,
                        examples: Sequence[Example] = ()) -> list[dict[str, str]]:
    """The request to translate `text` into `target`, after one answered request per example
    that has both `source` and `target`."""
    turns = []
    for ex in examples:
        if source in ex and target in ex:
            turns += [_request_turn(ex[source], target),
                      {"role": "assistant", "content": f"{PREFILL}{ex[target]}\n{CLOSE}"}]
    return turns + [_request_turn(text, target)]


def load_examples(path: str, languages: list[str], base_dir: Path | None = None) -> list[Example]:
    """The worked examples of `translation.examples`: every line a JSON object with a
    non-empty text for each of `languages` (other keys are ignored)."""
    file = resolve_path(path, base_dir)
    if not file.is_file():
        raise DataError(f"translation.examples: file not found: {file}")
    examples = []
    for where, rec in read_records(file):
        missing = [lang for lang in languages if not isinstance(rec.get(lang), str) or not rec[lang].strip()]
        if missing:
            raise DataError(f"{where}: translation example has no text for {', '.join(missing)} "
                            f"(every line needs {', '.join(languages)})")
        examples.append({lang: rec[lang].strip() for lang in languages})
    if not examples:
        raise DataError(f"{path}: no translation examples in the file")
    return examples


def parse_translation(raw: str, finish_reason: str, accept_unclosed: bool = True) -> tuple[str | None, str]:
    """(translation or None, status). `raw` is the prefill followed by the generated text.

    Status: ok, ok_unclosed (no closing tag, ended at end of turn), truncated (no closing
    tag, hit the token limit), unclosed (no closing tag and `accept_unclosed` is off),
    no_open_tag, empty.
    """
    end = raw.find(CLOSE)
    head = raw[:end] if end >= 0 else raw
    start = head.rfind(OPEN)
    if start < 0:
        return None, "no_open_tag"
    if end < 0:
        if finish_reason == "length":
            return None, "truncated"
        if not accept_unclosed:
            return None, "unclosed"
    text = _SENTENCE_TAGS.sub("", head[start + len(OPEN) :]).strip()
    if not text:
        return None, "empty"
    return text, "ok" if end >= 0 else "ok_unclosed"


def token_cost(lang: str) -> float:
    """Tokens per English token for text in `lang` (TOKEN_COST, else by script)."""
    return TOKEN_COST.get(lang) or SCRIPT_COST.get(get_language(lang).script, 8.0)


def translation_cap(source_tokens: int, factor: float, max_new_tokens: int,
                    source: str = "en", target: str = "en") -> int:
    """New-token cap for one translation: `factor` times the source's length in the target
    language's tokens (never less than `factor` x the source), plus room for the tags."""
    scale = max(1.0, token_cost(target) / token_cost(source))
    return max(1, min(max_new_tokens, math.ceil(factor * scale * source_tokens) + 16))


def translation_requests(
    responses: list[dict[str, Any]],
    dominant: str,
    languages: list[str],
    skip_ids: set[str],
    factor: float,
    max_new_tokens: int,
    stop_on_loop: bool = False,
    examples: Sequence[Example] = (),
    skip_answers: Collection[tuple[str, int]] = frozenset(),
    retries: int = 0,
    retry_temperature: float = 0.7,
) -> list[ChatRequest]:
    """en -> every xx, and every xx -> en, for non-empty answers of prompts not in `skip_ids`.
    `skip_answers`: (prompt id, answer index) whose pairs a gate drops anyway, in every language.
    `stop_on_loop`: the gates will drop a looping translation, so the engine may end it early.
    `examples`: worked examples shown before each request (few-shot).
    `retries`: each en -> xx request also `retries` more times at `retry_temperature`, marked
    `retry: j` (`translation.retries`; the pairs stage uses them where the first one fails)."""
    requests = []
    for r in responses:
        src, k = r["language"], sample_of(r)
        if r["prompt_id"] in skip_ids or not r["response"] or (str(r["prompt_id"]), k) in skip_answers:
            continue
        targets = languages if src == dominant else [dominant]
        for tgt in targets:
            request = ChatRequest(
                id=sample_id(f"{src}>{tgt}:{r['prompt_id']}", k),
                messages=translation_message(r["response"], tgt, src, examples),
                max_new_tokens=translation_cap(r["n_tokens"], factor, max_new_tokens, src, tgt),
                prefill=PREFILL,
                stop=(CLOSE,),
                stop_on_loop=stop_on_loop,
                meta={"prompt_id": r["prompt_id"], "sample": k, "source_language": src,
                      "target_language": tgt, "source": r["response"],
                      # With retries every record has the key: a shard's columns are its first row's.
                      **({"retry": 0} if retries else {})},
            )
            requests.append(request)
            if src == dominant:
                requests += [replace(request, id=f"{request.id}~retry{j}", temperature=retry_temperature,
                                     meta={**request.meta, "retry": j}) for j in range(1, retries + 1)]
    return sorted(requests, key=lambda q: (-len(q.meta["source"]), q.id))


def translation_record(req: ChatRequest, c: Completion, accept_unclosed: bool) -> dict[str, Any]:
    raw = req.prefill + c.text
    text, status = parse_translation(raw, c.finish_reason, accept_unclosed)
    return {**req.meta, "raw": raw, "translation": text, "status": status,
            "finish_reason": c.finish_reason, "n_tokens": c.n_tokens}


def translation_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per direction ("en>es"; its sampled retries as "en>es retries"): parsed, failed, and the
    count of each status."""
    by_dir: dict[str, Counter] = defaultdict(Counter)
    for r in records:  # retries apart: the direction's own counts stay those of its first translations
        retry = " retries" if r.get("retry") else ""
        by_dir[f"{r['source_language']}>{r['target_language']}{retry}"][r["status"]] += 1
    out = {}
    for d, counts in sorted(by_dir.items()):
        parsed = sum(counts[s] for s in PARSED)
        out[d] = {"parsed": parsed, "failed": sum(counts.values()) - parsed, "status": dict(counts)}
    return out
