#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/: tiktoken's GPT-2 tokens for the shared
corpora and for an adversarial set, which tests/unit/test_tokenizer.cpp holds
muongpt's C++ tokenizer to, token for token.

    python3 scripts/make_tokenizer_fixture.py [--corpora ../shared/data/corpora]

The encoding is built locally from data/gpt2/{vocab.bpe,encoder.json} with
tiktoken's own loader and its gpt2 pattern (nothing is downloaded), and texts
go through tiktoken's encode_ordinary (<|endoftext|> is plain text). Input
bytes are decoded with errors="replace", the documented behaviour of the C++
tokenizer for invalid UTF-8.

Output (kept small; well under 1 MB):
  corpora.json       per corpus file: bytes, token count, FNV-1a 64 hash of the
                     ids (each as uint16 little-endian), and the low 32 bits of
                     the same hash over every block of 512 ids, so the test
                     can say where the first difference lies
  adversarial.jsonl  a header line, then one case per line: name, input bytes
                     as hex, full ids
  texts/             a few corpus files, used when the corpora are absent
"""
import argparse
import json
import os
import random
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = 512
SAMPLES = ["moby-dick/chapter_1.txt", "moby-dick/etymology.txt", "moby-dick/extracts.txt",
           "sotu/1790_george_washington_n.txt"]
FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def build_encoding():
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local files, cache nothing
    try:
        import tiktoken
        import tiktoken.load
        from tiktoken_ext.openai_public import r50k_pat_str
    except ImportError:
        sys.exit("make_tokenizer_fixture: needs tiktoken (pip install tiktoken)")
    gpt2 = os.path.join(REPO, "data", "gpt2")
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(gpt2, "vocab.bpe"), encoder_json_file=os.path.join(gpt2, "encoder.json"))
    enc = tiktoken.Encoding(name="gpt2_local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)
    return enc, tiktoken.__version__, r50k_pat_str


def fnv1a64(ids):
    h = FNV_OFFSET
    for i in ids:
        h = ((h ^ (i & 0xFF)) * FNV_PRIME) & MASK
        h = ((h ^ (i >> 8)) * FNV_PRIME) & MASK
    return h


def encode_bytes(enc, data):
    return enc.encode_ordinary(data.decode("utf-8", errors="replace"))


def corpus_entries(enc, corpora):
    files = sorted(os.path.relpath(os.path.join(d, f), corpora).replace(os.sep, "/")
                   for d, _, names in os.walk(corpora) for f in names if f.endswith(".txt"))
    if not files:
        sys.exit(f"make_tokenizer_fixture: no .txt files under {corpora}")
    entries = []
    for rel in files:
        with open(os.path.join(corpora, rel), "rb") as f:
            data = f.read()
        ids = encode_bytes(enc, data)
        blocks = ["%08x" % (fnv1a64(ids[k:k + BLOCK]) & 0xFFFFFFFF) for k in range(0, len(ids), BLOCK)]
        entries.append({"path": rel, "bytes": len(data), "tokens": len(ids), "hash": "%016x" % fnv1a64(ids),
                        "block_hashes": blocks})
    return entries


def random_unicode(rng, n):
    """Code points from ranges that stress the pattern's classes: letters,
    marks, numbers, symbols and spaces of many scripts (no surrogates)."""
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
             (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1680, 0x180F), (0x2000, 0x206F),
             (0x2070, 0x218F), (0x2460, 0x24FF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x4E00, 0x4EFF),
             (0xAC00, 0xAC7F), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x1F300, 0x1F64F), (0x1F900, 0x1F9FF),
             (0x1D400, 0x1D7FF), (0x10000, 0x1007F)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def random_bytes(rng, n):
    """Mostly high bytes, so that truncated, overlong and surrogate sequences
    and stray continuation bytes all occur."""
    lead = [0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]
    out = bytearray()
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            out.append(rng.choice(lead))
        elif r < 0.7:
            out.append(rng.randint(0x80, 0xBF))
        else:
            out.append(rng.choice(b"ab 1'\n\t."))
    return bytes(out)


def adversarial_inputs():
    """(name, bytes) pairs; deterministic."""
    t = []

    def add(name, text):
        t.append((name, text if isinstance(text, bytes) else text.encode("utf-8")))

    add("empty", "")
    for name, s in [("space", " "), ("newline", "\n"), ("letter", "a"), ("nul", "\0"), ("tab", "\t")]:
        add("single " + name, s)
    add("mixed scripts", "Hello 世界! Привет, мир. مرحبا بالعالم नमस्ते दुनिया 你好，世界。こんにちは 안녕하세요 Γειά σου κόσμε שלום")
    add("cjk paragraph", "人工智能是计算机科学的一个分支。它企图了解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。"
        "東京は日本の首都です。カタカナとひらがなと漢字。")
    add("arabic with diacritics and bidi marks", "بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ \u200fمرحبا\u200e abc \u202bنص\u202c")
    add("devanagari with combining signs", "हिन्दी भाषा क्षत्रिय श्रीमान् ज्ञान द्विवेदी ॐ।")
    add("cyrillic mixed case", "Съешь же ещё этих мягких французских булок, да выпей ЧАЮ. Ёжик — ёлка")
    add("thai and korean jamo", "ภาษาไทยง่ายนิดเดียว \u1100\u1161\u11a8 한국어")
    add("emoji", "👍 👍🏽 👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ ❤ 🇺🇸🇯🇵 1️⃣ #️⃣ 🧑🏽‍💻 😀😃😄")
    add("emoji glued to words", "hi👋there🙂!ok👍🏽done")
    add("combining marks", "e\u0301te\u0301 cafe\u0301 caf\u00e9 n\u0303 a\u0308\u0304 \u0301start Z\u0324\u0354\u0367\u0311a\u0308\u0356")
    add("zalgo", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇ t͖̣̗̜͑ȅ̸̢x̴̛t")
    add("variation selectors and zero width", "a\ufe0fb \u200bword\u200b \u200c\u200d x\u2060y \ufeffbom")
    add("long space run", "a" + " " * 60 + "b")
    add("space run before newline", "word   \n   next")
    add("tabs and newlines", "\t\t\n\n  \n\tx\n\n\n\t \t y \t")
    add("crlf", "line one\r\nline two\r\n\r\nthree\r")
    add("trailing whitespace", "the end   ")
    add("trailing newlines", "the end\n\n\n")
    add("leading whitespace", "   \n  start")
    add("whitespace only", " \n \t \n ")
    add("nbsp", "x\u00a0y \u00a0z\u00a0\u00a0 w \u00a0")
    add("ideographic space", "日本\u3000語\u3000\u3000x \u3000")
    add("unicode spaces", "a\u2000b\u2001c\u2002d\u2003e\u2009f\u200ag\u202fh\u205fi\u1680j\u0085k\u2028l\u2029m\u000bn\u000co")
    add("mongolian vowel separator is not whitespace", "a\u180eb x \u180ey \u180e c\u180e\u180e d \u180e")
    add("control characters", "a\x01b\x1c\x1d\x1e\x1fc\x7fd\x80e")
    add("digits", "0 1 12 123 1234 12345 1234567890 0000 007")
    add("numbers with separators", "1,000,000 1.000.000 1 000 000 3.14159 -42 +7 1e-9 0x1F 1_000 12:30 2026-11-22 $5.99 50%")
    add("non-ascii digits", "١٢٣٤ ٥٦ ۱۲۳ ०१२३ ১২৩ ๑๒๓ ２０２６年 ½ ⅓ Ⅻ ① x²³ ₁₂ 𝟙𝟚")
    add("letters and digits glued", "abc123def 4th 21st COVID19 mp3 H2O 1a2b3c")
    add("contractions", "don't DON'T I'm I'M we'll WE'LL you've YOU'VE they're THEY'RE it's IT'S he'd")
    add("odd contractions", "'S ''ll ''s 's's 'll've ' s 'd'd rock'n'roll y'all'd've '' ' 're're it's' ''ll")
    add("curly apostrophes", "don’t it’s ’s ‘quoted’ “double” „low“")
    add("contraction at start and after space", "'s start 'tis ' ll 'LL 'Re 'vE")
    add("endoftext as plain text", "<|endoftext|>")
    add("endoftext inside text", "a<|endoftext|>b <|endoftext|><|endoftext|> <|startoftext|> <|endoftext")
    add("code", "def f(x):\n\treturn x**2  # square\n\nif __name__ == '__main__':\n    print(f(3))\n")
    add("json and urls", '{"key": [1, 2.5, null], "url": "https://example.com/a?b=c&d=e#f"} user@example.org')
    add("punctuation runs", "!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} ||| \\\\\\ /// ~~~ ``` ''' \"\"\"")
    add("punctuation before letters", "!a ?b .c ,d ;e :f -g _h (i )j")
    add("markdown", "# Title\n\n* item **bold** _it_ `code`\n> quote\n\n| a | b |\n|---|---|\n")
    add("math symbols", "∀x∈ℝ: x² ≥ 0 ∑ᵢ aᵢ ≈ ∫ f(x) dx ≠ ∞ √2 ∂y/∂x ⊕ ⊗ → ⇒ ⟨ψ|φ⟩")
    add("currency", "€100 £50 ¥1000 ₹20 ₿0.5 ¢5 $ 5")
    add("fullwidth", "ＡＢＣ ａｂｃ！？ （テスト）")
    add("hangul syllables and jamo", "한글 ㅎㅏㄴㄱㅡㄹ 가나다라마바사")
    add("very long word", "supercalifragilisticexpialidocious" * 40)
    add("very long letter run", "a" * 3000)
    add("very long random lowercase", "".join(random.Random(7).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2500)))
    add("very long digit run", "1234567890" * 300)
    add("very long punctuation run", "!@#$%^&*()" * 200)
    add("very long cjk run", "".join(chr(0x4E00 + (i * 37) % 2000) for i in range(1200)))
    add("very long emoji run", "😀🙂👍🏽" * 200)
    add("very long space run", " " * 2000 + "x" + "\n" * 1000)
    add("very long mixed word", ("ab" + "é" + "ж" + "ü") * 400)

    for name, b in [("lone continuation", b"\x80"), ("ff", b"\xff"), ("truncated 2-byte at end", b"abc\xc3"),
                    ("2-byte with bad continuation", b"\xc3\x28x"), ("truncated 3-byte", b"\xe2\x82"),
                    ("truncated 3-byte then ascii", b"\xe2\x82\x28"), ("surrogate", b"\xed\xa0\x80"),
                    ("truncated emoji", b"hi \xf0\x9f\x98 there"), ("above U+10FFFF", b"\xf4\x90\x80\x80"),
                    ("overlong slash", b"\xc0\xaf"), ("overlong 3-byte", b"\xe0\x80\xaf"),
                    ("5-byte form", b"\xf8\x88\x80\x80\x80"), ("fe fe inside words", b"hello \xfe\xfe world"),
                    ("latin-1 text", "caf\u00e9 na\u00efve \u00bfqu\u00e9?".encode("latin-1")),
                    ("invalid between letters", b"ab\x80cd \xc3\xa9\xa9 \xe6\x97\xa5\xe6\x97"),
                    ("many invalid bytes", bytes(range(0x80, 0x100)))]:
        add("invalid utf-8: " + name, b)

    rng = random.Random(20261122)
    for k in range(40):
        add(f"random unicode {k}", random_unicode(rng, rng.randint(1, 40)))
    for k in range(40):
        add(f"random bytes {k}", random_bytes(rng, rng.randint(1, 30)))
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", default=os.path.join(REPO, "..", "shared", "data", "corpora"),
                    help="the shared corpora folder (default: ../shared/data/corpora beside the repository)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()
    if not os.path.isdir(args.corpora):
        sys.exit(f"make_tokenizer_fixture: corpora folder {args.corpora} not found (pass --corpora DIR)")
    enc, version, pattern = build_encoding()

    os.makedirs(args.out, exist_ok=True)
    header = {"generator": "scripts/make_tokenizer_fixture.py", "tiktoken": version, "pattern": pattern,
              "hash": "FNV-1a 64 over the ids as uint16 little-endian", "block": BLOCK}
    entries = corpus_entries(enc, args.corpora)
    with open(os.path.join(args.out, "corpora.json"), "w") as f:
        json.dump({**header, "files": entries}, f, separators=(",", ":"))
        f.write("\n")

    cases = [{"name": name, "hex": data.hex(), "ids": encode_bytes(enc, data)} for name, data in adversarial_inputs()]
    with open(os.path.join(args.out, "adversarial.jsonl"), "w") as f:
        f.write(json.dumps(header) + "\n")  # readable: one case per line
        f.write("".join(json.dumps(c, ensure_ascii=True) + "\n" for c in cases))

    texts = os.path.join(args.out, "texts")
    shutil.rmtree(texts, ignore_errors=True)
    for rel in SAMPLES:
        os.makedirs(os.path.dirname(os.path.join(texts, rel)), exist_ok=True)
        shutil.copyfile(os.path.join(args.corpora, rel), os.path.join(texts, rel))
    total = sum(e["tokens"] for e in entries)
    print(f"make_tokenizer_fixture: {len(entries)} corpus files ({total} tokens), {len(cases)} adversarial cases, "
          f"{len(SAMPLES)} sample texts -> {os.path.relpath(args.out, REPO)} (tiktoken {version})")


if __name__ == "__main__":
    main()
