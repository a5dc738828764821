"""The ids of the special tokens every target vocabulary starts with ([PAD] [UNK] [BOS] [EOS])."""

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
