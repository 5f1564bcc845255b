"""Bytes <-> ids, with BLT's special ids.

BOE 0, BOS 1, EOS 2, BPE 3 (reserved), then byte b is id b + 4, so 256 bytes fill ids 4..259.
Ids from 260 up are extra specials: the latent-reasoning (Coconut) markers `<bot>` 260, `<eot>` 261
and `<latent>` 262 exist only in models whose `vocab_size` covers them (COCONUT_VOCAB; default BLT
models keep 260 ids).
"""

BOE_ID = 0
BOS_ID = 1
EOS_ID = 2
BPE_ID = 3
OFFSET = 4
BYTE_VOCAB = 256 + OFFSET  # 260
BOT_ID = 260  # begin of latent thoughts
EOT_ID = 261  # end of latent thoughts
LATENT_ID = 262  # one continuous thought
LATENT_SPECIALS = (BOT_ID, EOT_ID, LATENT_ID)
COCONUT_VOCAB = 264  # 263 ids, padded to an even size


def encode(text: str, add_bos: bool = True, add_eos: bool = False) -> list[int]:
    """UTF-8 bytes of `text` as ids, `[BOS] + [b + 4 ...] (+ [EOS])`."""
    ids = [b + OFFSET for b in text.encode("utf-8")]
    if add_bos:
        ids.insert(0, BOS_ID)
    if add_eos:
        ids.append(EOS_ID)
    return ids


def ids_to_bytes(ids) -> bytes:
    """The raw bytes of the byte ids in `ids`; special and out-of-range ids are skipped."""
    return bytes(int(i) - OFFSET for i in ids if OFFSET <= int(i) < BYTE_VOCAB)


def decode(ids) -> str:
    """Text of `ids`: specials skipped, invalid UTF-8 replaced by U+FFFD. Never raises."""
    return ids_to_bytes(ids).decode("utf-8", errors="replace")
