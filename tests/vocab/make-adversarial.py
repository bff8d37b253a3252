#!/usr/bin/env python3
"""Writes the adversarial texts of the GPT-2 exactness test (committed outputs; rerun to regenerate):
  data/adversarial.txt         valid UTF-8, compared against both oracles (JS gpt-3-encoder, Python reference)
  data/adversarial-python.txt  whitespace code points on which the JS oracle's \\s differs from GPT-2's (Python
                               `regex`: U+0085 is White_Space, U+FEFF and U+180E are not), compared against Python only
Documents are separated by "<|endoftext|>"."""
import os
import random
import unicodedata

here = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20250101)

docs = [
    "I'm sure you're right, they've said he'll come and she'd know it's done; don't WON'T 'S 'T ''s '''re ’s",
    "12345678901234567890 3.14159 1,000,000 0x1F 1e-9 ٣٤٥ ۱۲۳ Ⅻ ½ ² 第3回",
    "  a", "a  ", "\n\n\n", "\t\t x", " \u00a0x", "\u3000text\u3000", "line\u2028sep\u2029para", "  \n  \n\t ",
    "👍🏽 👨‍👩‍👧 🇯🇵🇫🇷 🤖🤖🤖 ❤️ ✔︎",
    "日本語のテキストです。 한국어 텍스트 ภาษาไทยมีสระ हिन्दी भाषा",
    "e\u0301 Z\u0337\u0322\u034e\u032da\u0336l\u0338g\u0334o\u0335 a\u0300\u0301\u0302\u0303",
    "שלום עולם مرحبا بالعالم",
    ",,,,,,,,", ",,", "a,b,c", ", ,", "," * 37, ",,a,,b,,,c,,,,", "...,,,...", ",'s", "',,'",
    "!!!???... ----- ===== ////// <<<>>> '''' ~~~ ^^^ ___ *** ### @@@ $$$ %%% &&& |||",
    " " * 3000 + "x", "a" * 2000, "ab" * 1000, "\n" * 500 + "y", " \t" * 700, "é" * 1500, "9" * 2500,
    "for (int i = 0; i < n; ++i) {\n    x += y[i] * 2;\n}\n",
    "https://example.com/path?q=1&r=%20x#frag user@example.org",
    "∑∫√∞≠≤≥ €£¥₹ ©®™ °±×÷",
    "<|endoftext <|im_start|> |> <| endoftext |>",
    "zero\u200bwidth\u200djoiner\u2060word", "vs\ufe0fsel", "\ue000\uf8ff private", "\uffff\ufffe nonchar",
    "\U0010ffff \U0001F600 \U00020000 \U0002A6D6",
    "\x00\x01\x02\x7f ctrl \x1c\x1d\x1e\x1f seps \x0b\x0c",
    "Mr. O'Neil's dog's bone. L'été. rock'n'roll y'all'd've",
    "MiXeD CaSe WoRdS and UPPER CASE and lower case",
]


def random_text(n):
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            out.append(chr(rng.randrange(0x20, 0x7F)))
        elif r < 0.6:
            out.append(rng.choice(" \n\t'"))
        elif r < 0.8:
            out.append(chr(rng.randrange(0xA0, 0x3000)))
        elif r < 0.95:
            cp = rng.randrange(0x3000, 0x30000)
            if 0xD800 <= cp < 0xE000:
                cp = 0x4E00
            out.append(chr(cp))
        else:
            cp = rng.randrange(0xE000, 0x110000)
            out.append(chr(cp))
        # PCRE2 10.42 (Debian 12) has Unicode 14 tables; characters assigned later may differ in category from
        # the oracles' newer tables, so random code points are drawn among those assigned in Unicode 14 (the
        # version of Python 3.11's unicodedata) or private use.
        if unicodedata.unidata_version == "14.0.0" and unicodedata.category(out[-1]) == "Cn":
            out[-1] = "\u4e00"
    return "".join(out)


for k in range(40):
    docs.append(random_text(rng.randrange(1, 600)))

# Words glued with every separator kind, to exercise the pattern's alternatives at boundaries.
seps = [" ", "  ", "\n", "'", "''", "'s", " '", ",", ".", "1", " 1", "\t", "\u00a0", "é", "—", "😀"]
words = ["the", "The", "café", "naïve", "x", "42", "don", "ll", "re", "A"]
for k in range(60):
    docs.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randrange(1, 40))))

special_ws = ["\u0085", "\ufeff", "\u180e", "\u1680", "\u2007", "\u205f"]
pydocs = []
for w in special_ws:
    pydocs += [f"a{w}b", f"a {w} b", f"{w}{w}{w}x", f"x{w}", f"{w}", f"a  {w}b", f"'{w}s", f"1{w}2"]
for k in range(20):
    pydocs.append("".join(rng.choice(["a", " ", "b", "'s", "1", ","] + special_ws) for _ in range(rng.randrange(1, 30))))

for name, ds in [("adversarial.txt", docs), ("adversarial-python.txt", pydocs)]:
    assert all("<|endoftext|>" not in d for d in ds)
    with open(os.path.join(here, "data", name), "w", encoding="utf-8", newline="") as f:
        f.write("<|endoftext|>".join(ds))
    print(name, len(ds), "documents")
