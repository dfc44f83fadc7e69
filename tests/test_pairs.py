"""The pairing rule of the method, on hand-made records."""

from collections import Counter

from lidr.text.quality import is_translation_request
from lidr.stages.pairs import (add_language_pairs, build_pairs, cap_shared_openings, opening_limit,
                               translation_task_ids, trim_cut_off_rejected)


def resp(pid, lang, text, prompt=None):
    return {"prompt_id": pid, "language": lang, "prompt": prompt or f"{lang} prompt {pid}", "response": text}


def tr(pid, src, tgt, text):
    return {"prompt_id": pid, "source_language": src, "target_language": tgt, "translation": text,
            "status": "ok" if text else "truncated"}


def test_native_and_dominant_pairs_follow_the_language_imbalance():
    responses = [resp("1", "en", "Paris is the capital."), resp("1", "es", "Madrid es la capital."),
                 resp("1", "de", "Berlin ist die Hauptstadt.")]
    translations = [tr("1", "en", "es", "París es la capital."), tr("1", "en", "de", "Paris ist die Hauptstadt."),
                    tr("1", "es", "en", "Madrid is the capital."), tr("1", "de", "en", "Berlin is the capital.")]
    pairs, stats = build_pairs(responses, translations, "en", ["es", "de"], set())
    by = {(p["language"], p["via_language"]): p for p in pairs}
    es = by[("es", None)]
    assert es["prompt"] == [{"role": "user", "content": "es prompt 1"}]
    assert es["chosen"] == [{"role": "assistant", "content": "París es la capital."}]
    assert es["rejected"] == [{"role": "assistant", "content": "Madrid es la capital."}]
    en_de = by[("en", "de")]
    assert en_de["prompt"][0]["content"] == "en prompt 1"
    assert en_de["chosen"][0]["content"] == "Paris is the capital."
    assert en_de["rejected"][0]["content"] == "Berlin is the capital."
    assert len(pairs) == 4  # one per xx, and one English pair per xx
    assert stats["en"] == {"kept": 2, "dropped": {}}
    assert stats["es"]["kept"] == 1 and stats["de"]["kept"] == 1


def test_failed_identical_and_empty_are_dropped_and_counted():
    responses = [resp("a", "en", "Four."), resp("a", "fr", "Quatre."),
                 resp("b", "en", "Hello"), resp("b", "fr", "Bonjour"),
                 resp("c", "en", "Yes"), resp("c", "fr", "")]
    translations = [tr("a", "en", "fr", None), tr("a", "fr", "en", "Four."),  # failed; identical back-translation
                    tr("b", "en", "fr", "Bonjour"), tr("b", "fr", "en", "Good day"),  # identical chosen/rejected
                    tr("c", "en", "fr", "Oui")]  # empty native answer: never translated
    pairs, stats = build_pairs(responses, translations, "en", ["fr"], set())
    assert [(p["prompt_id"], p["language"]) for p in pairs] == [("b", "en")]
    assert stats["fr"]["dropped"] == {"translation_failed": 1, "identical": 1, "empty": 1}
    assert stats["en"]["dropped"] == {"identical": 1, "empty": 1}


def test_translation_task_prompts_copy_or_skip():
    responses = [resp("t", "en", "Je t'aime", prompt="Translate into French: I love you"),
                 resp("t", "es", "Te quiero")]
    ids = translation_task_ids(responses, set(), detect=True)
    assert ids == {"t"}
    pairs, stats = build_pairs(responses, [], "en", ["es"], ids, translation_tasks="copy")
    es = [p for p in pairs if p["language"] == "es"][0]
    assert es["chosen"][0]["content"] == "Je t'aime"  # the untranslated English-side answer
    assert es["rejected"][0]["content"] == "Te quiero"
    en = [p for p in pairs if p["language"] == "en"][0]
    assert en["rejected"][0]["content"] == "Te quiero"
    pairs, stats = build_pairs(responses, [], "en", ["es"], ids, translation_tasks="skip")
    assert pairs == []
    assert stats["es"]["dropped"] == {"translation_task": 1}
    assert stats["en"]["dropped"] == {"translation_task": 1}


def test_dominant_pairs_can_be_turned_off():
    responses = [resp("1", "en", "A"), resp("1", "es", "B")]
    translations = [tr("1", "en", "es", "C"), tr("1", "es", "en", "D")]
    pairs, stats = build_pairs(responses, translations, "en", ["es"], set(), dominant_pairs=False)
    assert [p["language"] for p in pairs] == ["es"]
    assert stats["en"]["kept"] == 0


def test_translation_request_detection():
    assert is_translation_request("Translate the following phrase into French.\nI miss you")
    assert is_translation_request("Provide the translation of 'cat' in German")
    assert not is_translation_request("Give three tips for staying healthy.")


def test_english_pairs_are_capped_in_proportion_to_each_language():
    """ratio 1: as many English pairs via xx as xx pairs kept, those whose prompt kept its xx
    pair first; ratio 0 drops them all; the xx pairs are never touched."""
    from lidr.stages.pairs import cap_dominant_pairs

    xx = [{"prompt_id": p, "language": lang, "via_language": None} for p, lang in [("3", "es"), ("1", "de")]]
    en = [{"prompt_id": p, "language": "en", "via_language": lang}
          for p, lang in [("1", "es"), ("2", "es"), ("3", "es"), ("1", "de"), ("2", "de")]]
    kept, dropped = cap_dominant_pairs(xx + en, 1.0)
    assert [(p["prompt_id"], p["language"], p["via_language"]) for p in kept] == [
        ("3", "es", None), ("1", "de", None), ("3", "en", "es"), ("1", "en", "de")]
    assert dropped == {"es": 2, "de": 1}
    kept, dropped = cap_dominant_pairs(xx + en, 2.0)
    assert [(p["prompt_id"], p["via_language"]) for p in kept if p["via_language"]] == [
        ("1", "es"), ("3", "es"), ("1", "de"), ("2", "de")]
    kept, dropped = cap_dominant_pairs(xx + en, 0.0)
    assert kept == xx and dropped == {"es": 3, "de": 2}
    # A language with no pairs of its own keeps no English pairs through it.
    assert cap_dominant_pairs(en, 5.0)[0] == []


def test_language_pairs_set_the_translated_answer_over_the_english_one():
    responses = [resp("1", "en", "Tom has 16 apples."), resp("1", "es", "El tíreo de Tom es 4."),
                 resp("t", "en", "Je t'aime", prompt="Translate into French: I love you"), resp("t", "es", "Te quiero")]
    translations = [tr("1", "en", "es", "Tom tiene 16 manzanas."), tr("1", "es", "en", "Tom's tireo is 4.")]
    pairs, _ = build_pairs(responses, translations, "en", ["es"], {"t"}, translation_tasks="copy")
    with_lang, added = add_language_pairs(pairs, "en")
    assert added == {"es": 1}  # not for the English pair, nor for a translation request's copied answer
    assert len(with_lang) == len(pairs) + 1
    i = next(i for i, p in enumerate(with_lang) if p["rejected_source"] == "en response")
    lang_pair, es_pair = with_lang[i], with_lang[i - 1]  # it follows its xx pair
    assert lang_pair["language"] == "es" and lang_pair["prompt"] == es_pair["prompt"] == [
        {"role": "user", "content": "es prompt 1"}]
    assert lang_pair["chosen"] == es_pair["chosen"] == [{"role": "assistant", "content": "Tom tiene 16 manzanas."}]
    assert lang_pair["rejected"] == [{"role": "assistant", "content": "Tom has 16 apples."}]
    assert es_pair["rejected"][0]["content"] == "El tíreo de Tom es 4."  # the xx pair itself is unchanged


def test_a_looping_rejected_answer_cut_at_the_cap_is_trimmed_to_the_chosen_length():
    """`gates.cut_off_native_rejected: trim`: the model's own xx answer that ran to the token cap
    is cut, after a whole word, to at most its chosen side's length; an answer that ended by
    itself, a translated rejected side (English pairs), and one shorter than its chosen stay."""
    loop = "El tíreo de Tom es 4. En este caso, el tíreo de Tom es 4. " * 6
    responses = [resp("1", "en", "Tom has 12 + 4 = 16 apples."), {**resp("1", "es", loop), "finish_reason": "length"},
                 resp("2", "en", "Ana has 6 - 3 = 3 candies."), resp("2", "es", "Ana tiene 3. " * 9),
                 resp("3", "en", "Leo has 11 + 7 = 18 now."), {**resp("3", "es", "Leo 18"), "finish_reason": "length"}]
    translations = [tr("1", "en", "es", "Tom tiene 12 + 4 = 16 manzanas."), tr("1", "es", "en", "Tom's tireo is 4."),
                    tr("2", "en", "es", "Ana tiene 6 - 3 = 3 caramelos."), tr("2", "es", "en", "Ana has 3."),
                    tr("3", "en", "es", "Leo tiene 11 + 7 = 18 ahora."), tr("3", "es", "en", "Leo 18")]
    translations[1]["finish_reason"] = "length"  # a cut translation is the gates' to drop, not trimmed
    pairs, _ = build_pairs(responses, translations, "en", ["es"], set())
    out = trim_cut_off_rejected(pairs)
    assert Counter(p["language"] for p in out if p["rejected_trimmed_from"] is not None) == {"es": 1}
    by = {(p["prompt_id"], p["language"]): p for p in out}
    cut = by[("1", "es")]
    chosen = cut["chosen"][0]["content"]
    assert cut["rejected"] == [{"role": "assistant", "content": "El tíreo de Tom es 4. En este"}]  # 29 of 31
    assert len(cut["rejected"][0]["content"]) <= len(chosen) and cut["rejected_trimmed_from"] == len(loop)
    assert loop.startswith(cut["rejected"][0]["content"])
    # Unchanged: an answer that stopped by itself, one already shorter than its chosen side, English pairs.
    for key in (("2", "es"), ("3", "es"), ("1", "en"), ("2", "en")):
        assert by[key] == {**next(p for p in pairs if (p["prompt_id"], p["language"]) == key),
                           "rejected_trimmed_from": None}
    assert [p["prompt_id"] for p in out] == [p["prompt_id"] for p in pairs]  # same pairs, same order
    # A cut that would leave nothing (the chosen side one character, the answer opening on a
    # space) leaves the side whole rather than empty.
    blank = {**cut, "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": " " + loop}]}
    assert trim_cut_off_rejected([blank]) == [{**blank, "rejected_trimmed_from": None}]


def test_language_pairs_skip_translations_much_shorter_than_their_english_answer():
    """`pairs.language_pairs_min_ratio`: a translation that kept only the answer line of a worked
    English answer gets no language pair (its xx pair stays); a full translation gets one."""
    worked = "Tom has 4 apples. He buys 12 more, so he has 4 + 12 = 16 apples.\n#### 16"
    responses = [resp("1", "en", worked), resp("1", "es", "El tíreo de Tom es 4."),
                 resp("2", "en", "Sam reads 3 pages."), resp("2", "es", "Sam lee.")]
    translations = [tr("1", "en", "es", "El resultado es: 16"), tr("1", "es", "en", "Tom's tireo is 4."),
                    tr("2", "en", "es", "Sam lee 3 páginas."), tr("2", "es", "en", "Sam reads.")]
    pairs, _ = build_pairs(responses, translations, "en", ["es"], set())
    kept, added = add_language_pairs(pairs, "en", min_ratio=0.5)
    assert added == {"es": 1} and len(kept) == len(pairs) + 1
    lang_pair = next(p for p in kept if p["rejected_source"] == "en response")
    assert lang_pair["chosen"][0]["content"] == "Sam lee 3 páginas."
    assert [p for p in kept if p["rejected_source"] != "en response"] == pairs  # xx pairs all stay
    assert add_language_pairs(pairs, "en")[1] == {"es": 2}  # without the ratio, both


def test_language_pairs_measure_a_translation_in_its_own_language_characters():
    """A full Chinese translation has about a third of its English source's characters: the
    ratio is counted per language (`length_ratio`), so it keeps its language pair; a Spanish
    answer line of the same raw share does not."""
    english = "Sam reads 3 pages every day, so in 5 days he reads 15 pages."
    responses = [resp("1", "en", english), resp("1", "zh", "萨姆读了。"), resp("1", "es", "Sam lee.")]
    translations = [tr("1", "en", "zh", "萨姆每天读3页，所以5天读15页。"), tr("1", "zh", "en", "Sam read."),
                    tr("1", "en", "es", "Son 15 páginas."), tr("1", "es", "en", "Sam reads.")]
    pairs, _ = build_pairs(responses, translations, "en", ["zh", "es"], set())
    raw = {p["language"]: len(p["chosen"][0]["content"]) / len(english) for p in pairs if p["language"] != "en"}
    assert raw["zh"] < 0.5 and raw["es"] < 0.5, raw  # by raw characters both would be dropped
    assert add_language_pairs(pairs, "en", min_ratio=0.5)[1] == {"zh": 1}


def _frame_pairs(n_frame, varied, lang="es"):
    """Pairs of `lang` whose chosen sides are n_frame answer lines and the given varied answers,
    each with its English pair."""
    chosen = [f"El resultado es: {i}" for i in range(n_frame)] + varied
    responses, translations = [], []
    for i, text in enumerate(chosen):
        pid = str(i)
        responses += [resp(pid, "en", f"Tom has {i} apples. He buys 2 more, so he has {i + 2}."),
                      resp(pid, lang, f"Tom tiene manzanas {i}.")]
        translations += [tr(pid, "en", lang, text), tr(pid, lang, "en", f"Tom has apples {i}.")]
    return build_pairs(responses, translations, "en", [lang], set())[0]


def test_opening_limit_keeps_every_opening_under_the_share_of_what_is_kept():
    assert opening_limit([10, 1, 1], others=2, share=0.5) == 4  # 4 of 8: the largest that fits
    assert opening_limit([3, 3, 3], others=0, share=0.5) is None  # a third each: no cap
    assert opening_limit([5], others=0, share=0.5) == 1  # one form only: one of it stays
    assert opening_limit([1, 1], others=0, share=0.1) is None  # nothing shared
    for counts, others, share in [([20, 6, 2, 1], 3, 0.25), ([9, 9, 1], 0, 0.4), ([50, 2], 10, 0.3)]:
        k = opening_limit(counts, others, share)
        kept = others + sum(min(c, k) for c in counts)
        assert k <= share * kept < k + 1 + share * len(counts), (counts, k)  # fits, and k + 1 would not
        assert k + 1 > share * (others + sum(min(c, k + 1) for c in counts))


def test_shared_openings_are_capped_per_language_and_english_pairs_stay():
    """`pairs.max_opening_share`: the Spanish answer line makes up 8 of 12 chosen sides; with a
    cap of 0.5 four of them stay (4 of 8 kept), the varied answers and every English pair stay."""
    varied = ["Tom tiene 16 manzanas.", "Sam lee 3 páginas.", "Ana come 2 caramelos.", "Hay 5 gatos."]
    pairs = _frame_pairs(8, varied)
    kept, dropped = cap_shared_openings(pairs, "en", 0.5)
    assert dropped == {"es": 4}
    es = [p["chosen"][0]["content"] for p in kept if p["language"] == "es"]
    assert set(varied) <= set(es) and sum(t.startswith("El resultado") for t in es) == 4
    assert [p for p in kept if p["language"] == "en"] == [p for p in pairs if p["language"] == "en"]
    again, _ = cap_shared_openings(list(reversed(pairs)), "en", 0.5)  # the same pairs whatever the order
    assert {p["prompt_id"] for p in again} == {p["prompt_id"] for p in kept}
    assert cap_shared_openings(_frame_pairs(2, varied), "en", 0.5)[1] == {}  # 2 of 6: under the share
