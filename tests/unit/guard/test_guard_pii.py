"""PII recognizers: true positives with exact spans, near misses that must not match, redaction modes."""

from __future__ import annotations

import pytest

from lmforge.errors import ConfigError
from lmforge.guard import CryptoKeyError
from lmforge.guard.pii import (
    RECOGNIZERS,
    PrivacyPolicy,
    Recognizer,
    RegexRecognizer,
    detect,
    entity_types,
    get_recognizer,
    redact,
    redact_texts,
    scan_texts,
)
from lmforge.guard.pii._validators import luhn_ok, mrz_check_digit, valid_bank_card, valid_cn_id

_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id(first17: str) -> str:
    """Append the GB 11643 check character (an independent implementation for the tests)."""
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _W, strict=True)) % 11]


def luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError(prefix)


def found(text: str) -> list[tuple[str, str]]:
    return [(e.type, text[e.start : e.end]) for e in detect(text)]


def assert_exact(text: str, etype: str, value: str) -> None:
    start = text.index(value)
    assert [(e.type, e.start, e.end) for e in detect(text)] == [(etype, start, start + len(value))], found(text)


VALID_ID = cn_id("11010519491231002")  # the GB 11643 specimen, 11010519491231002X
CARD_UNIONPAY = luhn_complete("621700123456789")

POSITIVES = [
    # (entity type, value, template)
    ("EMAIL", "li.wei+news@mail.example.com.cn", "邮箱{}谢谢"),
    ("EMAIL", "JOHN_DOE@Example.ORG", "write to {}."),
    ("PHONE", "13812345678", "我的手机号{}，请回电"),
    ("PHONE", "138-1234-5678", "call {} today"),
    ("PHONE", "+86 139 1234 5678", "tel: {}"),
    ("PHONE", "010-62345678", "北京办公室{}转总机"),
    ("PHONE", "(021)62345678", "上海 {}"),
    ("PHONE", "0571-8888888", "杭州 {}"),
    ("PHONE", "(212) 555-1234", "NY office {}, ask for Sam"),
    ("PHONE", "+1 415-555-2671", "SF: {}"),
    ("PHONE", "212.555.1234", "fax {}"),
    ("PHONE", "+44 20 7946 0958", "London {} 2023"),
    ("PHONE", "+33 1 23 45 67 89", "Paris {}"),
    ("PHONE", "+4930123456", "Berlin {}"),
    ("CN_ID", VALID_ID, "身份证号{}已登记"),
    ("CN_ID", cn_id("44030619851105123"), "ID {}"),
    ("CN_ID", cn_id("32010220000229001"), "leap day {}"),
    ("BANK_CARD", "4111 1111 1111 1111", "card {} exp 12/29"),
    ("BANK_CARD", "5500000000000004", "mc {}"),
    ("BANK_CARD", "3400-000000-00009", "amex {}"),
    ("BANK_CARD", CARD_UNIONPAY, "银行卡{}"),
    ("BANK_CARD", "6011000000000004", "discover {}"),
    ("BANK_CARD", "3530111333300000", "jcb {}"),
    ("IP", "192.168.1.1", "服务器{}宕机"),
    ("IP", "8.8.8.8", "dns {}."),
    ("IP", "2001:db8::8a2e:370:7334", "v6 {}."),
    ("IP", "fe80::1", "link-local {}"),
    ("IP", "::1", "loopback {} only"),
    ("URL", "https://example.com/path?q=1&r=2", "see {}."),
    ("URL", "http://10.0.0.1:8080/admin", "panel ({})"),
    ("URL", "www.baidu.com/s?wd=x", "访问{}。"),
    ("URL", "https://en.wikipedia.org/wiki/Foo_(bar)", "at {}, ok"),
    ("PASSPORT", "E12345678", "passport no: {}"),
    ("PASSPORT", "EA1234567", "护照号码{}"),
    ("PASSPORT", "L898902C36UTO7408122F1204159ZE184226B<<<<<10", "MRZ\n{}\n"),
]


@pytest.mark.parametrize(("etype", "value", "template"), POSITIVES, ids=[p[1] for p in POSITIVES])
def test_true_positive_with_exact_span(etype: str, value: str, template: str) -> None:
    assert_exact(template.format(value), etype, value)


NEGATIVES = [
    # near misses: wrong check digit, wrong Luhn, wrong length, dates, amounts, order numbers, versions
    "身份证号" + VALID_ID[:-1] + ("0" if VALID_ID[-1] != "0" else "1"),  # wrong check digit
    "id 11010519490230002X",  # 30 February
    "id " + cn_id("11010520991231002"),  # born in the future
    "id " + cn_id("00010519491231002"),  # no such province
    "号码 " + VALID_ID[:17],  # 17 digits
    "number 1101051949123100211",  # 19 digits
    "card 4111 1111 1111 1112",  # Luhn fails
    "card 4111111111111112",
    "number 1234567812345670",  # Luhn holds, no issuer starts with 1
    "order #4111111111111111",  # labeled as an order number
    "订单号：6217001234567890123",
    "total $4111111111111111.00",
    "金额 5500000000000004 元",
    "phone 12345678901",  # no mobile prefix 123
    "phone 1381234567",  # 10 digits
    "phone 138123456789",  # 12 digits
    "订单号13812345678",
    "¥13812345678",
    "paid 13812345678元",
    "ORD13812345678",
    "date 2023-11-05 at 13:45",
    "dates 20231105 and 2023/11/05 and 05.11.2023",
    "amount 1,234,567.89 USD",
    "us 123-456-7890",  # area code starts with 1
    "us 212-911-1234",  # N11 exchange
    "us 2125551234",  # bare ten digits
    "call +1234567",  # not a valid international number
    "landline 010-12345678",  # local number starts with 1
    "mail user@localhost or a@b.c or @united or john.@x.com",
    "ip 256.1.1.1 and 1.2.3 and 01.02.03.04 and 1.2.3.4.5",
    "version v1.2.3.4",
    "time 12:30:45, mac 00:1A:2B:3C:4D:5E, std::vector, a:b",
    "domain example.com and file.txt and http://",
    "random E12345678 with no label around it at all, really",
    "MRZ L898902C37UTO7408122F1204159ZE184226B<<<<<10",  # document check digit wrong
    "￥3,299.00 元, 订单 20231105123456789",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_near_miss_is_not_pii(text: str) -> None:
    assert detect(text) == [], found(text)


# Recall before validity: after a contact cue a phone-shaped number is masked even when no
# operator has that range (a typo of a real number is still personal data); the same number
# without the cue is left to the strict validator.
CUED = [
    # (template with the cue, value, the same number without a cue)
    ("call me at {}", "+86 154 1234 5678", None),  # +CC set apart: masked with or without a cue
    ("call me at {}", "15412345678", "batch {} arrived"),  # 154: no operator yet
    ("电话{}", "15412345678", "批次{}已到"),
    ("请拨打{}", "154 1234 5678", "编码{}"),
    ("手机：{}", "+86 154-1234-5678", None),
    ("请拨打{}", "010-01234567", "北京 {}"),  # Beijing, local part starts with 0
    ("电话：{}", "021-01234567", "上海{}"),  # Shanghai, local part starts with 0
    ("联系我们 {} 转 8", "(021)01234567", "区号 {}"),
    ("call me at {}", "415-911-0000", "us {}"),  # N11 exchange
    ("call me at {}", "(415) 911-0000", "sign: {}"),
    ("reach me on my cell at {} anytime", "212.911.1234", "ratio {}"),
    ("Tel. {}", "0755-01234567", "code {}"),
    ("whatsapp {}", "+44 7700 900123", None),
]
UNCUED_SHAPE = [  # a country code set apart from grouped digits: a phone number without a cue
    ("London {}", "+86 154 1234 5678"),
    ("SF: {}", "+1 (415) 911-0000"),
    ("{} (office)", "+1 415-911-0000"),
    ("номер {}", "+7 912 345 67 89"),
]


@pytest.mark.parametrize(("template", "value", "uncued"), CUED, ids=[f"{t}|{v}" for t, v, _ in CUED])
def test_phone_shaped_number_after_a_contact_cue_is_masked(template: str, value: str, uncued: str | None) -> None:
    text = template.format(value)
    assert_exact(text, "PHONE", value)
    assert value not in redact(text).text
    if uncued is not None:  # without the cue the strict validator still decides: not a valid number
        assert detect(uncued.format(value)) == [], found(uncued.format(value))


@pytest.mark.parametrize(("template", "value"), UNCUED_SHAPE, ids=[v for _, v in UNCUED_SHAPE])
def test_plus_country_code_with_grouped_digits_is_masked_without_a_cue(template: str, value: str) -> None:
    assert_exact(template.format(value), "PHONE", value)


CUED_NEAR_MISSES = [
    # a cue nearby, but the number is labeled, is a date or an amount, or has no phone shape
    "call me about order 13812345678 shipped",
    "order 13812345678 shipped, call me",
    "电话联系过了，订单号15412345678",
    "请拨打客服，运单号 02101234567",
    "call me on 2024-01-15 at 10:30",
    "电话预约 2024-01-15 下午",
    "联系日期 20240115",
    "请拨打热线，金额 ¥1,234,567",
    "call me, I paid ¥1,234,567 already",
    "phone bill $415-911-0000",  # currency label
    "致电后退款 1,234,567 元",
    "call about flight CA1234 on 2024-01-15",
    "联系航班MU5101，座位 12A",
    "phone 12345678901",  # 123 is no mobile shape (13x-19x)
    "call me at 1381234567",  # 10 digits
    "call +1234567",  # ungrouped and invalid
    "call me +1.23 2.50 3.00",  # decimals, not groups
    "hotel 15412345678 and recall 15412345678 and telling 15412345678",  # cue letters inside words
    "call me tomorrow, the parcel code is 15412345678",  # the cue is too far away
    "landline 010-12345678",
]


@pytest.mark.parametrize("text", CUED_NEAR_MISSES)
def test_contact_cue_does_not_mask_near_misses(text: str) -> None:
    assert detect(text) == [], found(text)


def test_validators_directly() -> None:
    assert valid_cn_id(VALID_ID) and VALID_ID == "11010519491231002X"
    assert valid_cn_id(VALID_ID.lower())
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert mrz_check_digit("L898902C3") == "6"


def test_longer_span_and_priority_resolve_overlaps() -> None:
    text = "profile https://x.com/u?mail=a@b.com end"
    assert found(text) == [("URL", "https://x.com/u?mail=a@b.com")]
    # An 18-digit UnionPay-looking number that is also a valid ID: the ID wins.
    candidate = next(
        cn_id(f"62010219900101{i:03d}") for i in range(1000) if luhn_ok(cn_id(f"62010219900101{i:03d}"))
    )
    assert valid_cn_id(candidate) and valid_bank_card(candidate)
    assert found(f"x {candidate} y") == [("CN_ID", candidate)]


def test_many_entities_in_one_text_in_order() -> None:
    text = f"张三 {VALID_ID}, 13812345678, zhang@example.com, 4111111111111111, 10.1.2.3"
    assert [t for t, _ in found(text)] == ["CN_ID", "PHONE", "EMAIL", "BANK_CARD", "IP"]


def test_mask_hash_drop_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "call 13812345678 or mail a@example.com"
    assert redact(text).text == "call [PHONE] or mail [EMAIL]"
    assert redact(text, PrivacyPolicy(mode="drop")).text == "call  or mail "
    assert redact(text, PrivacyPolicy(entities=["EMAIL"])).text == "call 13812345678 or mail [EMAIL]"

    monkeypatch.delenv("LMFORGE_PII_SALT", raising=False)
    with pytest.raises(CryptoKeyError, match="LMFORGE_PII_SALT"):
        redact(text, PrivacyPolicy(mode="hash"))
    monkeypatch.setenv("LMFORGE_PII_SALT", "short")
    with pytest.raises(CryptoKeyError, match="only 5 characters") as exc:
        redact(text, PrivacyPolicy(mode="hash"))
    assert "short" not in str(exc.value)  # the secret is never echoed
    monkeypatch.setenv("LMFORGE_PII_SALT", "a-long-enough-secret-salt")
    first = redact(text, PrivacyPolicy(mode="hash")).text
    again = redact("mail a@example.com", PrivacyPolicy(mode="hash")).text
    assert first.startswith("call [PHONE:") and "13812345678" not in first
    assert first.split(" or mail ")[1] == again.split("mail ")[1]  # same value, same token
    monkeypatch.setenv("LMFORGE_PII_SALT", "another-long-enough-secret")
    assert redact(text, PrivacyPolicy(mode="hash")).text != first  # keyed: a new key, new tokens


def test_entities_carry_spans_on_the_original_text() -> None:
    text = "a 13812345678 b"
    result = redact(text)
    (entity,) = result.entities
    assert entity.to_dict() == {"type": "PHONE", "start": 2, "end": 13}
    assert text[entity.start : entity.end] == "13812345678"


def test_redact_texts_and_scan_texts() -> None:
    texts = ["nothing here", "mail a@example.com and b@example.org", "13812345678"]
    out, counts = redact_texts(texts)
    assert out == ["nothing here", "mail [EMAIL] and [EMAIL]", "[PHONE]"]
    assert counts == {"EMAIL": 2, "PHONE": 1}
    scan = scan_texts(texts)
    assert (scan.n_texts, scan.texts_with_pii, scan.counts) == (3, 2, {"EMAIL": 2, "PHONE": 1})


def test_policy_validation_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as exc:
        PrivacyPolicy(mode="blur", entities=["PHONE", "SSN"])  # type: ignore[arg-type]
    message = str(exc.value)
    assert "blur" in message and "SSN" in message and "Available:" in message


def test_registry_fails_loudly_and_accepts_plugins() -> None:
    assert {"EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IP", "URL", "PASSPORT"} <= set(entity_types())
    with pytest.raises(ConfigError, match="Available:.*cn_id"):
        get_recognizer("ssn")
    for rec in RECOGNIZERS.values():
        assert isinstance(rec, Recognizer)
    import re

    from lmforge.guard.pii import register_recognizer

    with pytest.raises(ConfigError, match="already registered"):
        register_recognizer(RegexRecognizer("email", "EMAIL", re.compile("x")))
    with pytest.raises(ConfigError, match="upper case"):
        register_recognizer(RegexRecognizer("lower_type", "employee", re.compile("x")))


def test_longest_digit_run() -> None:
    from lmforge.guard.pii._registry import longest_digit_run

    assert [longest_digit_run(t) for t in ("", "no digits", "a1b22c333", "12 3456", "１２３")] == [0, 0, 3, 4, 3]


@pytest.mark.timeout(120)  # bounds a catastrophic backtrack (a hang); the time itself: bench/text_speed.py
def test_detect_on_adversarial_input_finds_only_the_leading_phone_number() -> None:
    nasty = "+1" + " 1" * 5000 + "a@" + "a" * 5000 + "::" * 3000 + "http://" + "(" * 5000
    # "+1 1 1 1 1 1 1 1 1 1 1 1" (26 chars) is phone-shaped; nothing else in the text is an entity.
    assert [(e.type, e.start, e.end) for e in detect(nasty)] == [("PHONE", 0, 26)]


def test_gates_never_hide_a_match() -> None:
    """A recognizer's fast skips (``min_digits``, ``gate``) only skip: without them ``find`` gives the same spans.

    Texts are random splices of the positive values, cut fragments of them and noise rich in
    digits and separators, so near-boundary cases (a digit run one short, a lone colon) occur.
    """
    import copy
    import random

    rng = random.Random(20261128)
    pieces = [value for _, value, _ in POSITIVES] + [VALID_ID[:17], "passport", "护照", "order #", "@united"]
    pieces += [value for _, value, _ in CUED] + ["call me at ", "电话", "请拨打", "tel "]
    noise = "0123456789 -.:()+@/<Xx订单号EGabc\n"

    def text() -> str:
        parts = []
        for _ in range(rng.randint(1, 6)):
            roll = rng.random()
            if roll < 0.35:
                parts.append(rng.choice(pieces))
            elif roll < 0.6:
                value = rng.choice(pieces)
                a = rng.randint(0, len(value))
                parts.append(value[a : rng.randint(a, len(value))])
            else:
                parts.append("".join(rng.choice(noise) for _ in range(rng.randint(1, 12))))
        return "".join(parts)

    texts = [text() for _ in range(4000)]
    from lmforge.guard.pii._registry import longest_digit_run

    def skips(r: RegexRecognizer, t: str) -> bool:
        return longest_digit_run(t) < r.min_digits or (r.gate is not None and r.gate.search(t) is None)

    gated = [r for r in RECOGNIZERS.values() if getattr(r, "gate", None) or getattr(r, "min_digits", 0)]
    assert len(gated) >= 9, [r.name for r in gated]
    for recognizer in gated:
        ungated = copy.copy(recognizer)
        ungated.gate, ungated.min_digits = None, 0
        matched = skipped = 0
        for t in texts:
            expected = list(ungated.find(t))
            assert list(recognizer.find(t)) == expected, (recognizer.name, t)
            matched += bool(expected)
            skipped += skips(recognizer, t)
        assert matched > 0, f"{recognizer.name}: no random text matched; the test would prove nothing"
        assert skipped > 0, f"{recognizer.name}: its fast skips skipped no text"
