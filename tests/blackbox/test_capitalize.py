"""hello capitalises a name as this machine's python3 does: str.capitalize() (Python 3.8 and
later: the first character to title case, the rest to lower case, with the full mappings of
SpecialCasing.txt and the final-sigma rule). The reference is python3's own capitalize(),
called here, never a hand-written expectation."""

import json
import sys
import unicodedata
from urllib.parse import quote

from rawhttp import Conn, build

# Names in many scripts, and the cases where capitalising is not one character to one.
CORPUS = [
    # Latin with diacritics
    "été", "ÉCOLE", "élodie", "øyvind", "ÅSA", "łukasz", "ŁÓDŹ", "şule", "ÇAĞLA", "žofia",
    "ñandú", "ÿvonne", "ĳsbrand", "ĲSSEL", "đorđe", "ȺNNA", "ⱥnna", "ɐbc", "ꭓ",
    "e\u0301cole", "E\u0301COLE", "a\u030aSA",  # combining marks after the first letter
    # digraphs: the title case is neither the upper nor the lower one
    "ǆemal", "ǄEMAL", "ǅemal", "ǉubica", "ǈUBICA", "ǌegoš", "ǋEGOŠ", "ǳ", "Ǳ", "ǲ",
    # one character that becomes several (SpecialCasing.txt)
    "ß", "ßa", "ßTRASSE", "straße", "STRAẞE", "ẞ", "ŉoo", "ŉ", "ǰ", "ǰohn", "ẖ", "ẗ", "ẘ", "ẙ",
    "ẚ", "ﬁnn", "ﬂoß", "ﬀ", "ﬃ", "ﬄ", "ﬅ", "ﬆ", "İstanbul", "DİYARBAKIR", "iİ", "İ",
    # Greek, with final sigma
    "σοφία", "ΣΟΦΙΑ", "ΟΔΥΣΣΕΥΣ", "ΣΑΣ", "Σ", "ΑΣ", "ΑΣ ΒΣ", "ΑΣ.Β", "ΑΣ'Β", "ΑΣ.", "ΑΣ1",
    "ΑΣΣ", "Α\u0308Σ", "ΑΣ\u0308", "ΑΣ\u0308Β", "ς", "ΜΆΡΚΟΣ", "ΆΝΝΑ", "ΐ", "ΰ", "ᾳ", "ᾲ", "ᾴ",
    "ᾶ", "ᾷ", "ῂ", "ῇ", "ῒ", "ΐ", "ῖ", "ῗ", "ῢ", "ΰ", "ῤ", "ῦ", "ῧ", "ῲ", "ῷ", "ὐ", "ὒ", "ὔ",
    "ὖ", "ᾀ", "ᾈ", "ᾼ", "ῼ", "ͅ", "ªΣ", "🄰Σ", "ΑΣª",
    # Cyrillic
    "владимир", "ВЛАДИМИР", "ёлка", "ЁЛКА", "ўзбек", "ґанна", "ѳеодор", "ԁ", "ꙁ",
    # Armenian
    "արամ", "ԱՐԱՄ", "և", "ևա", "ﬓ", "ﬔ", "ﬕ", "ﬖ", "ﬗ",
    # Georgian: Mkhedruli (its title case is itself), Mtavruli, Asomtavruli, Nuskhuri
    "ნინო", "ᲜᲘᲜᲝ", "Ⴀⴁ", "ⴀⴁ",
    # Cherokee (upper case first in Unicode), Deseret, Osage, Adlam, Glagolitic, Coptic
    "ᏣᎳᎩ", "ꮳꮃꭹ", "ᏸ", "𐐨𐐯𐑊𐐬", "𐐀𐐁", "𐓘𐓙", "𞤢𞤤𞤭", "ⰰⰱ", "ⲁⲃ",
    # numbers and symbols with a case
    "ⅷ", "Ⅷⅸ", "ⓐⒷ", "ʰa",
    # no case at all: CJK, kana, Hangul, Hebrew, Arabic, Devanagari, Thai
    "张伟", "田中", "ひらがなABC", "김민준", "דוד", "محمد", "देवनागरी", "สมชาย",
    # emoji (with modifiers, ZWJ sequences, flags)
    "😀x", "👍🏽BOB", "🇫🇷FR", "👩\u200d💻ADA", "\u200dx",
    # ASCII and the empty cases
    "baz", "BAZ QUX", "123abC", "x",
]


def ask(port, names):
    """hello's greeting for each name, over one keep-alive connection (pipelined)."""
    answers = []
    with Conn(port) as c:
        for start in range(0, len(names), 100):
            batch = names[start:start + 100]
            c.send(b"".join(build("GET", "/" + quote(n, safe="")) for n in batch))
            for n in batch:
                r = c.read_response()
                assert r.status == 200, (n, r.raw)
                answers.append(json.loads(r.body.decode("utf-8"))["msg"])
    return answers


def mismatches(names, answers):
    out = []
    for n, got in zip(names, answers):
        want = "Hello, %s!" % n.capitalize()
        if got != want:
            out.append("%r: hello %r, python %r" % (n, got, want))
    return out


def test_corpus_matches_python(hello):
    assert "é".capitalize() == "É" and "ǆ".capitalize() == "ǅ"  # a Python >= 3.8
    bad = mismatches(CORPUS, ask(hello.port, CORPUS))
    assert not bad, "%d of %d names differ from python %s:\n%s" % (
        len(bad), len(CORPUS), sys.version.split()[0], "\n".join(bad))


def cased_code_points():
    """Every code point that python3's Unicode database gives a case mapping."""
    for cp in range(0x80, 0x110000):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or c in "/":
            continue
        if c.lower() != c or c.upper() != c or c.title() != c:
            yield c


def test_every_cased_character_matches_python(hello):
    """Each character with a case mapping, first (title case) and after one (lower case), and
    before a sigma (cased or not decides final sigma)."""
    names = [c + c + "Σ" for c in cased_code_points()]
    assert len(names) > 2500, len(names)
    bad = mismatches(names, ask(hello.port, names))
    assert not bad, "%d of %d differ (python %s, Unicode %s):\n%s" % (
        len(bad), len(names), sys.version.split()[0], unicodedata.unidata_version,
        "\n".join(bad[:40]))
