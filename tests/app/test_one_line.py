"""The characters a one-line field cannot carry, as app.cmdutil's pattern finds them."""

import unicodedata

from app.cmdutil import has_unsafe, one_line, unsafe_char


def test_the_pattern_is_exactly_the_unsafe_categories():
    want = {"Cc", "Zl", "Zp", "Cs"}
    wrong = [hex(c) for c in range(0x110000) if unsafe_char(chr(c)) != (unicodedata.category(chr(c)) in want)]
    assert wrong == []


def test_one_line():
    text = "a\x00b\nc\u2028d\udce9e\x85f\x7fé🎵\t"
    assert one_line(text) == "a b c d\ufffde f é🎵 "
    assert has_unsafe(text) and not has_unsafe("plain é 🎵 name.mp3")
