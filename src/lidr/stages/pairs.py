"""Stage 3, preference pairs: the language-imbalance reward.

For a non-dominant language xx and prompt x:
    prompt x_xx, chosen = y_en translated into xx, rejected = y_xx
and, for the dominant language, one pair per xx:
    prompt x_en, chosen = y_en, rejected = y_xx translated into en

Prompts that are themselves translation requests ("Translate into French: ...") are
special: their answer's language is fixed by the request, so translating the answer is
meaningless. With `translation_tasks: copy` their pairs use the untranslated answers
(chosen y_en, rejected y_xx, on both sides); with `skip` they are dropped and counted.

With several answers per prompt (`generation.samples`), answer k in English and answer k in
xx make the pairs of answer k, as the first answers do in a one-answer run.

A pair with an empty side, a failed translation, or chosen == rejected carries no
signal: it is dropped and counted by reason. Pairs are stored in TRL's conversational
preference format (prompt / chosen / rejected as lists of chat messages).

After the quality gates, `cap_dominant_pairs` can keep the English pairs in proportion to the
pairs of the language they came through (`pairs.dominant_ratio`), so that a language with few
pairs of its own is not trained mostly through English. Measured on the arithmetic family
(docs/EVIDENCE.md, ablations), the cap did not keep French and German answers in their
language: the short chosen answers did the harm (`gates.unidentified`).

`cap_shared_openings` (`pairs.max_opening_share`) keeps any one opening (an answer's first three
words) from making up more than a share of a language's chosen sides: the model's self-translations
of worked answers shrink to one frame ("El resultado es: N"), and trained on, the frame grows with
each iteration and reaches the everyday answers (docs/EVIDENCE.md).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

from lidr.stages.generate import sample_of
from lidr.text.quality import is_translation_request, length_ratio, opening


def translation_task_ids(responses: list[dict[str, Any]], listed: set[str], detect: bool) -> set[str]:
    """Listed ids, plus (with `detect`) prompts that ask for a translation in any language;
    prompts are aligned, so a request found in one language flags the id in all."""
    ids = set(listed)
    if detect:
        ids |= {r["prompt_id"] for r in responses if is_translation_request(r["prompt"])}
    return ids


def _messages(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


@dataclass
class _Side:
    text: str | None
    source: str  # e.g. "en>es translation", "es response"
    origin: str | None = None  # the text this side was translated from
    finish_reason: str | None = None
    failed: bool = False


def _response_side(r: dict[str, Any], source: str) -> _Side:
    return _Side(r["response"], source, None, r.get("finish_reason"))


def _translated_side(t: dict[str, Any] | None, src: dict[str, Any], source: str) -> _Side:
    if t is None:  # never requested: the source answer was empty (or the pair is malformed)
        return _Side(None, source, src["response"], None, failed=bool(src["response"]))
    return _Side(t["translation"], source, src["response"], t.get("finish_reason"), t["translation"] is None)


def _pair(pid, sample, lang, prompt, chosen: _Side, rejected: _Side, via) -> dict[str, Any]:
    return {
        "prompt_id": pid,
        "sample": sample,  # which answer to the prompt (`generation.samples`), 0 for the first
        "language": lang,
        "prompt": _messages("user", prompt),
        "chosen": _messages("assistant", chosen.text),
        "rejected": _messages("assistant", rejected.text),
        "chosen_source": chosen.source,
        "rejected_source": rejected.source,
        "via_language": via,
        # Provenance for quality gates: the text a translated side came from, and how
        # the generation that produced each side ended ("stop" or "length").
        "chosen_origin": chosen.origin,
        "rejected_origin": rejected.origin,
        "chosen_finish_reason": chosen.finish_reason,
        "rejected_finish_reason": rejected.finish_reason,
    }


def _drop_reason(chosen: str | None, rejected: str | None, failed: bool) -> str | None:
    if failed:
        return "translation_failed"
    if not chosen or not rejected:
        return "empty"
    if chosen.strip() == rejected.strip():
        return "identical"
    return None


def build_pairs(
    responses: list[dict[str, Any]],
    translations: list[dict[str, Any]],
    dominant: str,
    languages: list[str],
    task_ids: set[str],
    translation_tasks: str = "copy",
    dominant_pairs: bool = True,
    skipped: Mapping[tuple[str, int], str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(pairs, stats). Stats per pair language: kept, and dropped counts by reason.
    `skipped`: (prompt id, answer index) -> the gate that drops every pair of that answer, which
    is why its translations were not made (`gates.disagreeing_answers`); counted under its name."""
    skipped = skipped or {}
    # Keyed by prompt and answer (`generation.samples`): English answer k pairs with answer k in xx.
    resp = {(r["prompt_id"], sample_of(r), r["language"]): r for r in responses}
    # A translation's sampled retries (`translation.retries`) are not its first translation.
    trans = {(t["prompt_id"], sample_of(t), t["source_language"], t["target_language"]): t for t in translations
             if not t.get("retry")}
    order = [(r["prompt_id"], sample_of(r)) for r in responses if r["language"] == dominant]
    order = sorted(set(order), key=order.index)
    pairs: list[dict[str, Any]] = []
    dropped: dict[str, Counter] = defaultdict(Counter)

    def add(lang: str, prompt: str, chosen: _Side, rejected: _Side, pid: str, k: int, via: str | None) -> None:
        reason = _drop_reason(chosen.text, rejected.text, chosen.failed or rejected.failed)
        if reason:
            dropped[lang][reason] += 1
        else:
            pairs.append(_pair(pid, k, lang, prompt, chosen, rejected, via))

    for pid, k in order:
        en = resp[(pid, k, dominant)]
        for xx in languages:
            nat = resp.get((pid, k, xx))
            if nat is None:
                dropped[xx]["missing_response"] += 1
                continue
            is_task = pid in task_ids
            if gate := skipped.get((str(pid), k)):
                dropped[xx][gate] += 1
                if dominant_pairs:
                    dropped[dominant][gate] += 1
                continue
            if is_task and translation_tasks == "skip":
                dropped[xx]["translation_task"] += 1
                if dominant_pairs:
                    dropped[dominant]["translation_task"] += 1
                continue
            native = _response_side(nat, f"{xx} response")
            english = _response_side(en, f"{dominant} response")
            # Non-dominant pair: chosen = the English answer in xx.
            if is_task:
                chosen = _response_side(en, f"{dominant} response (translation task)")
            else:
                chosen = _translated_side(trans.get((pid, k, dominant, xx)), en, f"{dominant}>{xx} translation")
            add(xx, nat["prompt"], chosen, native, pid, k, None)
            if not dominant_pairs:
                continue
            # Dominant pair: rejected = the native answer back in English.
            if is_task:
                rejected = _response_side(nat, f"{xx} response (translation task)")
            else:
                rejected = _translated_side(trans.get((pid, k, xx, dominant)), nat, f"{xx}>{dominant} translation")
            add(dominant, en["prompt"], english, rejected, pid, k, xx)

    stats = {}
    for lang in [dominant, *languages]:
        kept = sum(1 for p in pairs if p["language"] == lang)
        stats[lang] = {"kept": kept, "dropped": dict(dropped[lang])}
    return pairs, stats


def add_language_pairs(pairs: list[dict[str, Any]], dominant: str,
                       min_ratio: float | None = None) -> tuple[list[dict[str, Any]], Counter]:
    """(pairs, added per language): for each kept pair of a non-dominant language whose chosen
    side is a translation, one more pair on the same prompt with the same chosen side and, as
    rejected, the English answer it was translated from (`pairs.language_pairs`).

    The two sides say the same thing in two languages, so the pair's only signal is the
    language: a question in xx is answered in xx, not in English. It is the preference the
    method's pairs leave implicit and that drifts when they are learned (answers to French and
    German questions turning English, docs/EVIDENCE.md). Each such pair follows its xx pair.
    With `min_ratio`, only where the chosen side has at least that share of the English
    answer's length (characters counted per language, `length_ratio`: a Chinese translation
    has about a third of its English source's characters): a translation that shrank a worked
    answer to its last line would teach that line as the way to answer in xx.
    """
    out: list[dict[str, Any]] = []
    added: Counter = Counter()
    for p in pairs:
        out.append(p)
        # Only an xx pair's chosen side is named so (English pairs and copied answers of
        # translation requests are not): it has the English answer it came from.
        if p["chosen_source"] != f"{dominant}>{p['language']} translation":
            continue
        english = p["chosen_origin"]
        if min_ratio is not None and \
                length_ratio(p["chosen"][-1]["content"], english, p["language"], dominant) < min_ratio:
            continue
        out.append({**p, "rejected": [{"role": "assistant", "content": english}],
                    "rejected_source": f"{dominant} response", "rejected_origin": None,
                    "rejected_finish_reason": None})
        added[p["language"]] += 1
    return out, added


def trim_cut_off_rejected(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pairs, where a rejected side that is the model's own answer cut at the
    token cap (`gates.cut_off_native_rejected: trim`) is cut again, at a word boundary, to about
    its chosen side's length (characters: both sides are in the pair's language).

    Most such answers are loops. Kept whole, a pair prefers a short answer over a long one as much
    as an answer over a loop, and DPO's margin grows with the length of what it pushes down.
    Trimmed, the rejected side is the loop's opening at the chosen's length: the pair pushes the
    loop down without a length contrast (the token cap already cut the text, so its end was
    never the model's). Measured on the arithmetic family (docs/EVIDENCE.md), the answers shrank
    as much as with `keep`: the length came from what these pairs push down, not from how long."""
    out = []
    for p in pairs:
        rejected, chosen = p["rejected"][-1]["content"], p["chosen"][-1]["content"]
        # Every pair has the key (the parquet schema is read from the first row): the length of
        # the rejected side before it was cut, None where it was not.
        cut = _cut_at_word(rejected, len(chosen))
        if p.get("rejected_finish_reason") != "length" or p.get("rejected_origin") is not None \
                or len(rejected) <= len(chosen) or not cut:
            out.append({**p, "rejected_trimmed_from": None})
            continue
        out.append({**p, "rejected": [*p["rejected"][:-1], {"role": "assistant", "content": cut}],
                    "rejected_trimmed_from": len(rejected)})
    return out


def _cut_at_word(text: str, n: int) -> str:
    """`text` cut to at most n characters, after its last whole word where there is one."""
    head = text[:n]
    if n < len(text) and not text[n].isspace() and (space := head.rstrip().rfind(" ")) > 0:
        head = head[:space]
    return head.rstrip()


def cap_dominant_pairs(pairs: list[dict[str, Any]], ratio: float) -> tuple[list[dict[str, Any]], Counter]:
    """(pairs, dropped per via language): at most `ratio` x (kept pairs of xx) English pairs
    that came through xx. English pairs whose prompt also kept its xx pair go first (the same
    problem, taught in both languages), then the rest in order."""
    own = Counter(p["language"] for p in pairs if p.get("via_language") is None)
    with_own = {(p["prompt_id"], p["language"]) for p in pairs if p.get("via_language") is None}
    dominant = [p for p in pairs if p.get("via_language") is not None]
    ranked = sorted(dominant, key=lambda p: (p["prompt_id"], p["via_language"]) not in with_own)
    room = {xx: int(ratio * n) for xx, n in own.items()}
    keep, dropped = set(), Counter()
    for p in ranked:
        xx = p["via_language"]
        if room.get(xx, 0) > 0:
            room[xx] -= 1
            keep.add(id(p))
        else:
            dropped[xx] += 1
    return [p for p in pairs if p.get("via_language") is None or id(p) in keep], dropped



def opening_limit(counts: list[int], others: int, share: float) -> int | None:
    """The most sides any one opening may keep so that none makes up more than `share` of what is
    kept: the largest K >= 1 with K <= share x (others + sum(min(c, K))). `counts`: sides per
    opening; `others`: sides with no opening (under three words), each a form of its own.
    None when no opening needs a cap. The share of the most common opening only grows with K,
    so the first K from the top that fits is the largest."""
    if max(counts, default=0) < 2:  # an opening of one side is shared with nothing
        return None
    for k in range(max(counts), 0, -1):
        if k <= share * (others + sum(min(c, k) for c in counts)):
            return None if k == max(counts) else k
    return 1


def _keep_order(p: dict[str, Any]) -> str:
    # Which pairs of a capped opening stay: spread over prompts by a hash, the same in every
    # run (pairs come ordered by prompt, and prompt ids by template).
    return hashlib.sha1(f"{p['prompt_id']}/{p.get('sample', 0)}".encode()).hexdigest()


def cap_shared_openings(pairs: list[dict[str, Any]], dominant: str,
                        share: float) -> tuple[list[dict[str, Any]], Counter]:
    """(pairs, dropped per language): for each non-dominant language, at most `share` of its pairs'
    chosen sides open with one opening (`opening`: first three words, numbers as '#'); pairs over
    the cap are dropped, the same ones in every run. English pairs are not capped: their chosen
    side is the model's own English answer, not a self-translation."""
    drop: set[int] = set()
    for lang in sorted({p["language"] for p in pairs} - {dominant}):
        by_opening: dict[str, list[dict[str, Any]]] = defaultdict(list)
        others = 0
        for p in pairs:
            if p["language"] == lang:
                if (o := opening(p["chosen"][-1]["content"])) is None:
                    others += 1
                else:
                    by_opening[o].append(p)
        limit = opening_limit([len(g) for g in by_opening.values()], others, share)
        if limit is None:
            continue
        for group in by_opening.values():
            drop.update(id(p) for p in sorted(group, key=_keep_order)[limit:])
    dropped = Counter(p["language"] for p in pairs if id(p) in drop)
    return [p for p in pairs if id(p) not in drop], dropped
