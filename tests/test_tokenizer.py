from hybrid_jax import tokenizer


def test_encode_bytes_offset_and_bos():
    assert tokenizer.encode("A") == [1, 65 + 4]
    assert tokenizer.encode("é", add_bos=False) == [0xC3 + 4, 0xA9 + 4]
    assert tokenizer.encode("", add_bos=True, add_eos=True) == [1, 2]


def test_decode_roundtrip_skips_specials():
    text = "héllo, wörld ✓"
    assert tokenizer.decode(tokenizer.encode(text) + [2, 0, 3, 261]) == text


def test_decode_invalid_utf8_never_raises():
    ids = [1, 0xC3 + 4]  # a lone UTF-8 lead byte
    assert tokenizer.decode(ids) == "\ufffd"
    assert tokenizer.decode([]) == ""
